import { timingSafeEqual } from 'node:crypto'
import { LRUCache } from 'lru-cache'
import type { AnswerResult, CodeStore, NewChallenge } from './auth-store.js'
import type { CodePurpose } from './one-time-code.js'

/** A live challenge. Kept small: the cache may hold `max` of them (see the README's Memory). */
interface Challenge {
  /** The MAC's bytes as a latin1 string: 48 bytes of heap, where a Buffer costs about 250. */
  readonly codeHash: string
  readonly expiresAt: number
  attemptsLeft: number
  readonly passwordHash: string | null
  readonly target: string | null
  readonly requestedBy: string
}

export interface ChallengeCacheOptions {
  /** Upper bound on live challenges; the least recently used is dropped beyond it. */
  max: number
}

/**
 * ChallengeCache is the embedded CodeStore: live challenges in process memory, bounded by `max`
 * and expired by each challenge's own expiresAt (checked on every look-up). Each method runs synchronously to its end, so answer() looks up, counts the
 * try, compares and consumes with nothing in between.
 */
export class ChallengeCache implements CodeStore {
  readonly #cache: LRUCache<string, Challenge>

  constructor(options: ChallengeCacheOptions) {
    // No TTL in the cache: each challenge's expiresAt decides, checked against the caller's now
    // (an LRU TTL would cost 16 bytes per slot and a timer per millisecond of traffic).
    this.#cache = new LRUCache({ max: options.max })
  }

  issue(c: NewChallenge): Promise<void> {
    this.#cache.set(key(c.purpose, c.subject), {
      codeHash: c.codeHash.toString('latin1'),
      expiresAt: c.expiresAt,
      attemptsLeft: c.maxAttempts,
      passwordHash: c.passwordHash,
      target: c.target,
      requestedBy: c.requestedBy,
    })
    return Promise.resolve()
  }

  pendingPassword(phone: string, clientKey: string, now: number): Promise<string | undefined> {
    const challenge = this.#live(key('register', phone), now)
    if (challenge === undefined) return Promise.resolve(undefined)
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
    const challenge = this.#live(k, now)
    if (challenge === undefined) return Promise.resolve({ ok: false, compared: false })
    challenge.attemptsLeft -= 1
    const stored = Buffer.from(challenge.codeHash, 'latin1')
    // Every candidate is compared, so the time does not depend on which key matched.
    let ok = false
    for (const candidate of candidates) {
      if (timingSafeEqual(stored, candidate)) ok = true
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

  /** live is the key's challenge unless it has expired; an expired one is dropped. */
  #live(k: string, now: number): Challenge | undefined {
    const challenge = this.#cache.get(k)
    if (challenge === undefined || challenge.expiresAt > now) return challenge
    this.#cache.delete(k)
    return undefined
  }
}

function key(purpose: CodePurpose, subject: string): string {
  // join builds one flat string (40 bytes for a number); a template literal leaves a cons string
  // with its parts (about 95 bytes), because hashing it as a Map key does not flatten it.
  return [purpose, subject].join(':')
}
