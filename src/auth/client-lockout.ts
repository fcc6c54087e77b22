import { AuthError } from './auth-error.js'
import type { AuthStore } from './auth-store.js'
import type { Clock } from './clock.js'

export interface LockoutPolicy {
  /** Consecutive credential failures from one client that lock it. */
  threshold: number
  /** How long the lock lasts; failures older than this are forgotten. */
  durationMs: number
}

// When every allowed try is still in flight, the next caller waits for them to finish.
const IN_FLIGHT_RETRY_MS = 1_000

/**
 * ClientLockout is the original API's rule, without its hole: N consecutive credential failures
 * from one client lock it out of VerifyOtp and Login. A success clears only the failures against
 * the same number, so logging into an account of one's own between guesses resets nothing.
 *
 * Each try is counted before the credential is checked (begin), and taken back only on success,
 * so concurrent tries cannot exceed the threshold.
 */
export class ClientLockout {
  readonly #store: AuthStore
  readonly #clock: Clock
  readonly #policy: LockoutPolicy

  constructor(store: AuthStore, clock: Clock, policy: LockoutPolicy) {
    this.#store = store
    this.#clock = clock
    this.#policy = policy
  }

  /** begin counts a try. Throws CLIENT_LOCKED_OUT with the time left. */
  begin(clientKey: string, phone: string): void {
    this.check(clientKey)
    const now = this.#clock.now()
    this.#store.addClientFailure(clientKey, phone, now, now - this.#policy.durationMs)
  }

  /**
   * check is begin for a credential checked synchronously, with no await before failNow or
   * succeed: no other try can interleave, so the try need not be written first (a write per call
   * saved on the success path). Returns whether the client has failures on record, the only case
   * in which succeed has anything to clear. Throws CLIENT_LOCKED_OUT with the time left.
   */
  check(clientKey: string): boolean {
    const now = this.#clock.now()
    const until = this.#store.findLockout(clientKey, now)
    if (until !== undefined) {
      throw new AuthError('CLIENT_LOCKED_OUT', { retryAfterMs: until - now })
    }
    const failures = this.#store.countClientFailures(clientKey, now - this.#policy.durationMs)
    if (failures >= this.#policy.threshold) {
      throw new AuthError('CLIENT_LOCKED_OUT', { retryAfterMs: IN_FLIGHT_RETRY_MS })
    }
    return failures > 0
  }

  /** failNow records a failed try that was checked with check, and locks at the threshold. */
  failNow(clientKey: string, phone: string): void {
    const now = this.#clock.now()
    this.#store.addClientFailure(clientKey, phone, now, now - this.#policy.durationMs)
    this.fail(clientKey)
  }

  /** fail confirms the try as a failure and locks the client once it reaches the threshold. */
  fail(clientKey: string): void {
    const now = this.#clock.now()
    const since = now - this.#policy.durationMs
    if (this.#store.countClientFailures(clientKey, since) >= this.#policy.threshold) {
      this.#store.lockClient(clientKey, now + this.#policy.durationMs)
      this.#store.clearClientFailures(clientKey)
    }
  }

  /** succeed forgets this client's failures against this number only. */
  succeed(clientKey: string, phone: string): void {
    this.#store.clearClientFailures(clientKey, phone)
  }
}
