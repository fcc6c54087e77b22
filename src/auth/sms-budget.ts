import { parsePhoneNumberFromString } from 'libphonenumber-js/max'
import { LRUCache } from 'lru-cache'
import { AuthError } from './auth-error.js'

export const HOUR_MS = 3_600_000
export const DAY_MS = 24 * HOUR_MS

/** The counters one SMS is charged against, besides the global one. */
export interface SmsBudgetKeys {
  /** ISO 3166 region of the number, or 'CC' + its calling code when it has none (e.g. 'CC800'). */
  country: string
  /** '+' + calling code + the first `prefixDigits` digits of the national number. */
  prefix: string
}

/** A charge that was counted; release() gives it back (once; later calls do nothing). */
export interface BudgetCharge {
  release(): Promise<void>
}

/**
 * SmsBudget caps SMS spend (SMS pumping defence): a global budget per UTC day, one per country
 * per UTC day and one per number prefix per UTC hour, in fixed windows. charge() counts one SMS
 * against all three, and only when all three have room, atomically: concurrent charges (in one
 * process, or on any number of replicas sharing PostgreSQL) never take a budget past its limit.
 * Throws SMS_BUDGET_EXHAUSTED with the time until the refusing window ends (the latest, when
 * several refuse); a refused charge counts against none of the three.
 */
export interface SmsBudget {
  charge(keys: SmsBudgetKeys, now: number): Promise<BudgetCharge>
}

/** The budgets' limits: SMS per window. Config's SmsBudgets fits. */
export interface SmsBudgetLimits {
  globalPerDay: number
  perCountryPerDay: number
  perPrefixPerHour: number
}

/** One counter a charge at a given time falls in: which budget, its window and its limit. */
export interface BudgetWindow {
  readonly kind: 'prefix' | 'country' | 'global'
  /** The counter's name, unique across kinds: 'prefix:+141555', 'country:US', 'global'. */
  readonly scope: string
  /** Epoch ms; windows are aligned to the UTC hour or the UTC day. */
  readonly start: number
  readonly end: number
  readonly limit: number
}

/**
 * budgetKeys names the country and prefix budgets an E.164 number is charged against. A string
 * libphonenumber cannot parse at all (not E.164) shares the one catch-all key 'unknown'.
 */
export function budgetKeys(e164: string, prefixDigits: number): SmsBudgetKeys {
  const parsed = parsePhoneNumberFromString(e164)
  if (parsed === undefined) return { country: 'unknown', prefix: 'unknown' }
  const callingCode = parsed.countryCallingCode
  return {
    country: parsed.country ?? `CC${callingCode}`,
    prefix: `+${callingCode}${parsed.nationalNumber.slice(0, prefixDigits)}`,
  }
}

/**
 * budgetWindows is the three counters a charge at `now` counts in, always in this order: prefix,
 * country, global. The PostgreSQL budget locks their rows in this order, so two charges never
 * wait on each other in a cycle (no deadlocks), and the busiest row (global) is locked last and
 * held the shortest.
 */
export function budgetWindows(
  keys: SmsBudgetKeys,
  now: number,
  limits: SmsBudgetLimits,
): readonly [BudgetWindow, BudgetWindow, BudgetWindow] {
  const hour = now - (now % HOUR_MS)
  // Epoch 0 is a UTC midnight and epoch ms have no leap seconds: days are multiples of DAY_MS.
  const day = now - (now % DAY_MS)
  return [
    {
      kind: 'prefix',
      scope: `prefix:${keys.prefix}`,
      start: hour,
      end: hour + HOUR_MS,
      limit: limits.perPrefixPerHour,
    },
    {
      kind: 'country',
      scope: `country:${keys.country}`,
      start: day,
      end: day + DAY_MS,
      limit: limits.perCountryPerDay,
    },
    { kind: 'global', scope: 'global', start: day, end: day + DAY_MS, limit: limits.globalPerDay },
  ]
}

/** budgetRefusal is SMS_BUDGET_EXHAUSTED with the wait until the last refusing window ends. */
export function budgetRefusal(refused: readonly BudgetWindow[], now: number): AuthError {
  const end = Math.max(...refused.map((w) => w.end))
  return new AuthError('SMS_BUDGET_EXHAUSTED', {
    retryAfterMs: end - now,
    // Which budgets refused (prefix, country, global): for dashboards and for the caller.
    metadata: { budget: refused.map((w) => w.kind).join(',') },
  })
}

/** checkLimits throws a RangeError unless every limit is a whole number of at least 1. */
export function checkLimits(limits: SmsBudgetLimits): void {
  for (const [name, value] of Object.entries({
    globalPerDay: limits.globalPerDay,
    perCountryPerDay: limits.perCountryPerDay,
    perPrefixPerHour: limits.perPrefixPerHour,
  })) {
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new RangeError(`SMS budget ${name} must be a whole number of at least 1`)
    }
  }
}

export interface MemorySmsBudgetOptions extends SmsBudgetLimits {
  /** Upper bound on tracked prefixes and on tracked countries, each. */
  max: number
}

// More than every country key there can be (libphonenumber's 245 regions, 'CC' with any of its
// 206 calling codes, 'unknown'), so the country budget stays exact; the LRU preallocates its
// slots, and `max` of them would cost about 3 MB at the default for keys that never come.
const COUNTRIES_MAX = 1_000

/** A count within one window; moved on in place, so a release can tell its window is over. */
interface Counter {
  start: number
  count: number
}

/**
 * MemorySmsBudget is the embedded SmsBudget (one process, like the SQLite store): counters in
 * process memory, checked and charged in one synchronous step, so no two charges interleave.
 *
 * Memory is bounded: prefixes (chosen by whoever asks for codes) and countries are each kept in
 * an LRU of `max` entries (countries: at most 1 000, more than there are). A counter of an ended
 * window is worth nothing and is always the least recently used, so it goes first. Only when
 * more than `max` prefixes are charged within one hour is a live one dropped: the least recently
 * charged prefix then starts again from zero for the rest of its hour (it fails open for that
 * prefix), while the global and country budgets stay exact, so spend still never exceeds them.
 * Distinct prefixes per hour can never exceed the global daily budget, so with `max` >=
 * globalPerDay the prefix budget is exact as well.
 */
export class MemorySmsBudget implements SmsBudget {
  readonly #limits: SmsBudgetLimits
  readonly #global: Counter = { start: Number.NEGATIVE_INFINITY, count: 0 }
  readonly #countries: LRUCache<string, Counter>
  readonly #prefixes: LRUCache<string, Counter>

  constructor(options: MemorySmsBudgetOptions) {
    checkLimits(options)
    this.#limits = {
      globalPerDay: options.globalPerDay,
      perCountryPerDay: options.perCountryPerDay,
      perPrefixPerHour: options.perPrefixPerHour,
    }
    this.#countries = new LRUCache({ max: Math.min(options.max, COUNTRIES_MAX) })
    this.#prefixes = new LRUCache({ max: options.max })
  }

  charge(keys: SmsBudgetKeys, now: number): Promise<BudgetCharge> {
    try {
      return Promise.resolve(this.#charge(keys, now))
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)))
    }
  }

  /** trackedPrefixes is how many prefix counters are held (at most `max`), for a gauge. */
  trackedPrefixes(): number {
    return this.#prefixes.size
  }

  #charge(keys: SmsBudgetKeys, now: number): BudgetCharge {
    const windows = budgetWindows(keys, now, this.#limits)
    const [prefix, country, global] = windows
    // peek: a refused charge neither creates entries nor refreshes any.
    const stored = [
      this.#prefixes.peek(keys.prefix),
      this.#countries.peek(keys.country),
      this.#global,
    ]
    const count = (i: number, w: BudgetWindow): number => {
      const c = stored[i]
      // A clock stepped back into an earlier window is checked against the later one it left.
      return c !== undefined && c.start >= w.start ? c.count : 0
    }
    const refused = windows.filter((w, i) => count(i, w) >= w.limit)
    if (refused.length > 0) throw budgetRefusal(refused, now)

    const counters = [
      this.#take(this.#prefixes, keys.prefix, prefix.start),
      this.#take(this.#countries, keys.country, country.start),
      this.#current(this.#global, global.start),
    ]
    for (const c of counters) c.count += 1
    const charged = counters.map((c) => c.start)

    let released = false
    return {
      release: () => {
        if (released) return Promise.resolve()
        released = true
        counters.forEach((c, i) => {
          // A counter that moved on to a later window (or was dropped) no longer holds this charge.
          if (c.start === charged[i] && c.count > 0) c.count -= 1
        })
        return Promise.resolve()
      },
    }
  }

  /** take is the key's counter for the window starting at `start`, made the most recently used. */
  #take(cache: LRUCache<string, Counter>, key: string, start: number): Counter {
    const existing = cache.get(key)
    if (existing !== undefined) return this.#current(existing, start)
    const created = { start, count: 0 }
    cache.set(key, created)
    return created
  }

  /** current moves a counter of an earlier window on to the window starting at `start`. */
  #current(counter: Counter, start: number): Counter {
    if (counter.start < start) {
      counter.start = start
      counter.count = 0
    }
    return counter
  }
}
