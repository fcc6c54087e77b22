import { LRUCache } from 'lru-cache'
import type { Clock } from './clock.js'
import type { CodeHasher, CodePurpose } from './one-time-code.js'

/** A challenge is a code that was sent and may still be answered. The code itself is never kept. */
export interface Challenge {
  readonly codeHash: Buffer
  readonly expiresAt: number
  attemptsLeft: number
  /** For sign-up: the argon2id hash given with the Register call that sent this code. */
  readonly passwordHash: string | null
  /** The client key of the call that asked for this code. */
  readonly requestedBy: string
}

export type AnswerResult = { ok: true; challenge: Challenge } | { ok: false }

export interface ChallengeCacheOptions {
  clock: Clock
  hasher: CodeHasher
  /** Upper bound on live challenges; the least recently used is dropped beyond it. */
  max: number
  ttlMs: number
  maxAttempts: number
}

/**
 * ChallengeCache holds the live challenges in process memory, bounded by `max` and expired by TTL.
 * All methods are synchronous: answer() looks up, counts the try, compares and consumes with no
 * await in between, so concurrent guesses can never exceed the per-code limit.
 */
export class ChallengeCache {
  readonly #cache: LRUCache<string, Challenge>
  readonly #hasher: CodeHasher
  readonly #clock: Clock
  readonly #ttlMs: number
  readonly #maxAttempts: number

  constructor(options: ChallengeCacheOptions) {
    this.#hasher = options.hasher
    this.#clock = options.clock
    this.#ttlMs = options.ttlMs
    this.#maxAttempts = options.maxAttempts
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

  /** issue stores a new challenge for the code, replacing any earlier one for the same purpose. */
  issue(
    purpose: CodePurpose,
    phone: string,
    code: string,
    passwordHash: string | null,
    requestedBy: string,
  ): Challenge {
    const challenge: Challenge = {
      codeHash: this.#hasher.hash(purpose, phone, code),
      expiresAt: this.#clock.now() + this.#ttlMs,
      attemptsLeft: this.#maxAttempts,
      passwordHash,
      requestedBy,
    }
    this.#cache.set(key(purpose, phone), challenge)
    return challenge
  }

  /**
   * issueDecoy stores a sign-up challenge no code can answer. Register on a verified number uses it
   * to remember the password it was given, exactly as for a pending number, so that a Login with
   * that password answers the same for both (see pendingPassword).
   */
  issueDecoy(purpose: CodePurpose, phone: string, passwordHash: string, requestedBy: string): void {
    this.#cache.set(key(purpose, phone), {
      // Codes are 6 digits, so the empty code's MAC matches nothing a caller can send.
      codeHash: this.#hasher.hash(purpose, phone, ''),
      expiresAt: this.#clock.now() + this.#ttlMs,
      attemptsLeft: this.#maxAttempts,
      passwordHash,
      requestedBy,
    })
  }

  /**
   * pendingPassword is the password hash given with the live sign-up challenge for the number, if
   * that challenge was asked for by this client. Reading it counts no try.
   */
  pendingPassword(phone: string, clientKey: string): string | undefined {
    const challenge = this.#cache.get(key('register', phone))
    if (challenge === undefined || challenge.expiresAt <= this.#clock.now()) return undefined
    if (challenge.requestedBy !== clientKey) return undefined
    return challenge.passwordHash ?? undefined
  }

  /**
   * answer checks a code. The try is counted before the comparison; a right code is consumed and
   * the last wrong try burns the challenge, so after the limit even the right code fails.
   */
  answer(purpose: CodePurpose, phone: string, code: string): AnswerResult {
    const k = key(purpose, phone)
    const challenge = this.#cache.get(k)
    if (challenge === undefined || challenge.expiresAt <= this.#clock.now()) {
      return { ok: false }
    }
    challenge.attemptsLeft -= 1
    const ok = this.#hasher.matches(challenge.codeHash, purpose, phone, code)
    if (ok || challenge.attemptsLeft <= 0) this.#cache.delete(k)
    return ok ? { ok: true, challenge } : { ok: false }
  }

  get size(): number {
    return this.#cache.size
  }
}

function key(purpose: CodePurpose, phone: string): string {
  return `${purpose}:${phone}`
}
