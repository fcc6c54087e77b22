import { timingSafeEqual } from 'node:crypto'
import { LRUCache } from 'lru-cache'
import type { AnswerResult, CodeStore, NewChallenge } from './auth-store.js'
import type { Clock } from './clock.js'
import type { CodePurpose } from './one-time-code.js'

interface Challenge {
  readonly codeHash: Buffer
  readonly expiresAt: number
  attemptsLeft: number
  readonly passwordHash: string | null
  readonly target: string | null
  readonly requestedBy: string
}

export interface ChallengeCacheOptions {
  clock: Clock
  /** Upper bound on live challenges; the least recently used is dropped beyond it. */
  max: number
  ttlMs: number
}

/**
 * ChallengeCache is the embedded CodeStore: live challenges in process memory, bounded by `max`
 * and expired by TTL. Each method runs synchronously to its end, so answer() looks up, counts the
 * try, compares and consumes with nothing in between.
 */
export class ChallengeCache implements CodeStore {
  readonly #cache: LRUCache<string, Challenge>

  constructor(options: ChallengeCacheOptions) {
    this.#cache = new LRUCache({
      max: options.max,
      ttl: options.ttlMs,
      // The cache reads time from our clock, so expiry follows the injected clock in tests.
      perf: options.clock,
      ttlAutopurge: false,
      updateAgeOnGet: false,
      allowStale: false,
    })
  }

  issue(c: NewChallenge): Promise<void> {
    this.#cache.set(key(c.purpose, c.subject), {
      codeHash: c.codeHash,
      expiresAt: c.expiresAt,
      attemptsLeft: c.maxAttempts,
      passwordHash: c.passwordHash,
      target: c.target,
      requestedBy: c.requestedBy,
    })
    return Promise.resolve()
  }

  pendingPassword(phone: string, clientKey: string, now: number): Promise<string | undefined> {
    const challenge = this.#cache.get(key('register', phone))
    if (challenge === undefined || challenge.expiresAt <= now) return Promise.resolve(undefined)
    if (challenge.requestedBy !== clientKey) return Promise.resolve(undefined)
    return Promise.resolve(challenge.passwordHash ?? undefined)
  }

  answer(
    purpose: CodePurpose,
    subject: string,
    candidates: readonly Buffer[],
    now: number,
  ): Promise<AnswerResult> {
    const k = key(purpose, subject)
    const challenge = this.#cache.get(k)
    if (challenge === undefined || challenge.expiresAt <= now) {
      return Promise.resolve({ ok: false, compared: false })
    }
    challenge.attemptsLeft -= 1
    // Every candidate is compared, so the time does not depend on which key matched.
    let ok = false
    for (const candidate of candidates) {
      if (timingSafeEqual(challenge.codeHash, candidate)) ok = true
    }
    if (ok || challenge.attemptsLeft <= 0) this.#cache.delete(k)
    return Promise.resolve(
      ok
        ? {
            ok: true,
            passwordHash: challenge.passwordHash,
            requestedBy: challenge.requestedBy,
            target: challenge.target,
          }
        : { ok: false, compared: true },
    )
  }

  discard(challenges: readonly { purpose: CodePurpose; subject: string }[]): Promise<void> {
    for (const c of challenges) this.#cache.delete(key(c.purpose, c.subject))
    return Promise.resolve()
  }

  size(): number {
    return this.#cache.size
  }
}

function key(purpose: CodePurpose, subject: string): string {
  return `${purpose}:${subject}`
}
