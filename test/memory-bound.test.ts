/**
 * Memory under a flood of unique numbers (SQLite, the embedded default): every in-process cache
 * holds at most OTPAUTH_CACHE_MAX entries, a cached number costs at most 1 KiB of heap, and the
 * heap stops growing once the caches are full. It measures bytes (heap + external after a full
 * GC), not time, so a busy machine does not change the outcome.
 */
import { createHmac } from 'node:crypto'
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { LRUCache } from 'lru-cache'
import { describe, expect, it, vi } from 'vitest'
import { ChallengeCache } from '../src/auth/challenge-cache.js'
import { SendThrottle } from '../src/auth/send-throttle.js'
import { MemorySmsBudget } from '../src/auth/sms-budget.js'
import { startTestServer, type TestServer } from './harness.js'

const KIB = 1024
const MAX = 4_096

/**
 * collectGarbage is V8's full GC. vitest starts its workers without --expose-gc; once the flag is
 * set, a new context gets the gc function.
 */
function collectGarbage(): () => void {
  setFlagsFromString('--expose-gc')
  return runInNewContext('gc') as () => void
}
const gc = collectGarbage()

/**
 * heapBytes is what JavaScript holds after a full collection: heap plus off-heap buffers, less
 * compiled code (it grows as the optimiser gets to more functions, whatever the caches hold).
 */
function heapBytes(): number {
  gc()
  gc()
  const code = getHeapSpaceStatistics().find((s) => s.space_name === 'code_space')
  const { heapUsed, external } = process.memoryUsage()
  return heapUsed + external - (code?.space_used_size ?? 0)
}

/** Number i of the flood: distinct valid UK mobile numbers, each from its own client address. */
function phoneOf(i: number): string {
  return `+44${String(7_100_000_000 + i)}`
}
function clientOf(i: number): string {
  return `10.${String((i >> 16) & 255)}.${String((i >> 8) & 255)}.${String(i & 255)}`
}

/**
 * flood registers `count` more unique numbers through the service, as the Register RPC does
 * (64 at a time, so their writes share commits), and drops what the test doubles record.
 */
async function flood(t: TestServer, from: number, count: number): Promise<number> {
  const batch = 64
  for (let i = from; i < from + count; i += batch) {
    const calls: Promise<unknown>[] = []
    for (let j = i; j < Math.min(i + batch, from + count); j += 1) {
      calls.push(
        t.app.auth.register({ phone: phoneOf(j), password: undefined }, { clientKey: clientOf(j) }),
      )
    }
    await Promise.all(calls)
    t.sms.messages.length = 0
    t.logs.lines.length = 0
  }
  return from + count
}

/**
 * Structures measures structures one after another, each filled through its own API with
 * 2 × `count` distinct keys (so it is full and has evicted as many). Every structure stays alive
 * until the end, so each figure is the heap it added: bytes per held entry, its preallocated
 * slots included.
 */
class Structures {
  readonly #kept: unknown[] = []
  #last = heapBytes()

  perEntry(count: number, build: () => (i: number) => unknown): number {
    const insert = build()
    this.#kept.push(insert)
    for (let i = 0; i < 2 * count; i += 1) insert(i)
    const now = heapBytes()
    const bytes = now - this.#last
    this.#last = now
    return bytes / count
  }

  get count(): number {
    return this.#kept.length
  }
}

describe('Memory bound', () => {
  it('when each in-memory structure is filled past its max through its own API, then its bytes per entry stay within its share of 1 KiB', () => {
    const max = 16_384
    const structures = new Structures()
    const now = Date.UTC(2026, 0, 1)
    const key = Buffer.alloc(32, 7)
    const limits = { cooldownMs: 60_000, perNumberPerHour: 5, perClientPerHour: 1_000_000, max }
    const budget = { globalPerDay: 1e8, perCountryPerDay: 1e8, perPrefixPerHour: 1e7, max }
    const bytes = {
      challenge: structures.perEntry(max, () => {
        const codes = new ChallengeCache({ max })
        return (i) =>
          codes.issue({
            purpose: 'register',
            subject: phoneOf(i),
            codeHash: createHmac('sha256', key).update(phoneOf(i)).digest(),
            expiresAt: now + 600_000,
            maxAttempts: 5,
            passwordHash: null,
            target: null,
            requestedBy: clientOf(i),
          })
      }),
      numberSends: structures.perEntry(max, () => {
        const throttle = new SendThrottle(limits)
        return (i) => throttle.reserve(phoneOf(i), clientOf(i % 256), now)
      }),
      numberAndClientSends: structures.perEntry(max, () => {
        const throttle = new SendThrottle(limits)
        return (i) => throttle.reserve(phoneOf(i), clientOf(i), now)
      }),
      prefix: structures.perEntry(max, () => {
        const b = new MemorySmsBudget(budget)
        return (i) => b.charge({ country: 'GB', prefix: `+44${String(100_000 + i)}` }, now)
      }),
    }
    console.log(
      `memory per entry at max ${String(max)}: ` +
        Object.entries(bytes)
          .map(([name, b]) => `${name} ${b.toFixed(0)} B`)
          .join(', '),
    )
    expect(bytes.challenge).toBeLessThanOrEqual(400)
    expect(bytes.numberSends).toBeLessThanOrEqual(300)
    expect(bytes.numberAndClientSends - bytes.numberSends).toBeLessThanOrEqual(250)
    expect(bytes.prefix).toBeLessThanOrEqual(250)
    // Each figure counted its structure: all were still held when it was measured.
    expect(structures.count).toBe(Object.keys(bytes).length)
  })

  it('when unique numbers from unique clients flood Register, then each cache holds at most max, a cached number costs at most 1 KiB and the heap plateaus once the caches are full', async () => {
    // Warm: the same path runs first, so compiled code and lazy state are in place.
    const warm = await startTestServer({ config: { cacheMax: 100 } })
    let next = await flood(warm, 0, 2_000)

    // What the caches preallocate for their slots: two empty servers that differ only in max.
    const before = heapBytes()
    await startTestServer({ config: { cacheMax: 100 } })
    const withSmall = heapBytes()
    const t = await startTestServer({ config: { cacheMax: MAX } })
    const started = heapBytes()
    const preallocated = (started - withSmall - (withSmall - before)) / (MAX - 100)

    const sets = vi.spyOn(LRUCache.prototype, 'set')
    next = await flood(t, next, 64)
    const caches = [...new Set(sets.mock.contexts as LRUCache<string, object>[])]
    sets.mockRestore()
    const sizes: number[][] = []

    next = await flood(t, next, MAX - 64)
    sizes.push(caches.map((c) => c.size))
    const full = heapBytes()
    next = await flood(t, next, MAX)
    sizes.push(caches.map((c) => c.size))
    const twice = heapBytes()
    await flood(t, next, MAX)
    sizes.push(caches.map((c) => c.size))
    const thrice = heapBytes()

    // Once full, each cached number stands for one entry of each per-number cache.
    const perNumber = preallocated + (twice - started) / MAX
    const growth = [full - started, twice - full, thrice - twice]
    console.log(
      `memory: ${String(caches.length)} caches of max ${String(MAX)}, sizes ${sizes.map((s) => s.join('/')).join(' → ')}; ` +
        `${perNumber.toFixed(0)} B per cached number (${preallocated.toFixed(0)} B of it preallocated); ` +
        `heap growth per fill of max numbers: ${growth.map((g) => `${(g / KIB).toFixed(0)} KiB`).join(', ')}`,
    )

    // (a) challenges, per-number sends, per-client buckets, prefixes, countries, parsed numbers
    expect(caches.length).toBeGreaterThanOrEqual(5)
    for (const s of sizes) for (const size of s) expect(size).toBeLessThanOrEqual(MAX)
    // The flood did fill the per-number caches.
    expect(sizes[0]?.filter((size) => size === MAX).length).toBeGreaterThanOrEqual(3)
    // (b) everything a cached number costs, its share of the preallocated slots included
    expect(perNumber).toBeLessThanOrEqual(1 * KIB)
    // (c) the plateau: once full, the Maps inside the LRUs grow their tables once (about 28 bytes
    // a slot, to twice their entries), and after that nothing grows.
    expect(growth[1]).toBeLessThan(0.5 * (growth[0] ?? 0))
    expect(growth[2]).toBeLessThan(0.05 * (growth[0] ?? 0))
  })
})
