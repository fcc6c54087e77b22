import { parsePhoneNumberFromString, type CountryCode } from 'libphonenumber-js/max'
import { LRUCache } from 'lru-cache'
import { invalidField } from './auth-error.js'
import { detachedAscii } from './detached.js'
import { budgetKeys, type SmsBudgetKeys } from './sms-budget.js'

// Longer than any real number in any notation; bounds the work done on hostile input.
const MAX_RAW_LENGTH = 64

/**
 * parsePhone normalises a number to E.164 with full libphonenumber metadata, so numbers that
 * cannot exist (unassigned ranges, wrong lengths) are refused. Throws INVALID_PHONE_NUMBER.
 */
export function parsePhone(
  raw: string,
  defaultRegion: CountryCode | undefined,
  field = 'phone_number',
): string {
  if (raw.trim() === '') {
    throw invalidField('INVALID_PHONE_NUMBER', field, `${field} is required`)
  }
  if (raw.length > MAX_RAW_LENGTH) {
    throw invalidField(
      'INVALID_PHONE_NUMBER',
      field,
      `${field} must be at most ${MAX_RAW_LENGTH} characters`,
    )
  }
  const parsed = parsePhoneNumberFromString(raw, defaultRegion)
  // An extension ("ext. 12") cannot receive an SMS; refusing it beats silently dropping it.
  if (parsed === undefined || !parsed.isValid() || parsed.ext !== undefined) {
    throw invalidField(
      'INVALID_PHONE_NUMBER',
      field,
      defaultRegion === undefined
        ? `${field} is not a valid phone number; use E.164 such as +14155550123`
        : `${field} is not a valid phone number`,
    )
  }
  return parsed.number
}

/** What the rules and metrics need of an accepted number, worked out once per number. */
interface NumberFacts {
  e164: string
  budgetKeys: SmsBudgetKeys
}

/**
 * PhoneParser is parsePhone with a bounded memo of accepted numbers and their budget keys and
 * region: a full-metadata parse costs ~20 µs and any other parse ~5 µs, each flow sends the same
 * number in two or more calls, and one call needs its budget keys and region in up to three
 * places. Refusals are not memoised, so hostile input cannot fill the memo with garbage it then
 * has to evict.
 */
export class PhoneParser {
  readonly #defaultRegion: CountryCode | undefined
  readonly #prefixDigits: number
  // Keyed by the raw input and, when it differs, by the E.164 form too (one shared entry).
  readonly #memo: LRUCache<string, NumberFacts>

  /** memoMax bounds the memo; it only needs the numbers of the flows in progress. */
  constructor(defaultRegion: CountryCode | undefined, memoMax: number, prefixDigits: number) {
    this.#defaultRegion = defaultRegion
    this.#prefixDigits = prefixDigits
    this.#memo = new LRUCache({ max: memoMax })
  }

  /** parse is parsePhone with the configured region. Throws INVALID_PHONE_NUMBER on `field`. */
  parse(raw: string, field?: string): string {
    const known = this.#memo.get(raw)
    if (known !== undefined) return known.e164
    // libphonenumber builds it by concatenation: as a rope it costs ~88 B against 32 in every
    // structure keyed by it (memo, send history, challenge).
    const e164 = detachedAscii(parsePhone(raw, this.#defaultRegion, field))
    const facts = this.#facts(e164)
    if (raw !== e164) this.#memo.set(raw, facts)
    return e164
  }

  /** budgetKeys are the SMS budgets an E.164 number is charged against (see budgetKeys). */
  budgetKeys(e164: string): SmsBudgetKeys {
    return this.#facts(e164).budgetKeys
  }

  /** region is the ISO 3166 country of an E.164 number ('001' for non-geographic ones). */
  region(e164: string): string {
    const { country } = this.#facts(e164).budgetKeys
    // A budget country is the ISO region, or 'CC<calling code>' / 'unknown' when there is none.
    return country.length === 2 ? country : '001'
  }

  #facts(e164: string): NumberFacts {
    let facts = this.#memo.get(e164)
    if (facts === undefined) {
      facts = { e164, budgetKeys: budgetKeys(e164, this.#prefixDigits) }
      this.#memo.set(e164, facts)
    }
    return facts
  }
}
