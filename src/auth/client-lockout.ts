import { AuthError } from './auth-error.js'
import type { AuthStore, LockoutLimits } from './auth-store.js'
import type { Clock } from './clock.js'

export interface LockoutPolicy {
  /** Consecutive credential failures from one client that lock it. */
  threshold: number
  /** How long the lock lasts; failures older than this are forgotten. */
  durationMs: number
}

// When every allowed try is still in flight, the next caller waits for them to finish.
const IN_FLIGHT_RETRY_MS = 1_000

/** A try in progress: end it with fail() or succeed(). */
export interface LockoutTry {
  fail(): Promise<void>
  succeed(): Promise<void>
  /** release takes the try back: it decided nothing (for instance the store failed). */
  release(): Promise<void>
}

/**
 * ClientLockout is the original API's rule, without its hole: N consecutive credential failures
 * from one client lock it out of VerifyOtp and Login. A success clears only the failures against
 * the same number, so logging into an account of one's own between guesses resets nothing.
 *
 * Each try is counted in the store before the credential is checked (begin), as one atomic step,
 * so concurrent tries, on one replica or many, cannot exceed the threshold.
 */
export class ClientLockout {
  readonly #store: AuthStore
  readonly #clock: Clock
  readonly #limits: LockoutLimits

  constructor(store: AuthStore, clock: Clock, policy: LockoutPolicy) {
    this.#store = store
    this.#clock = clock
    this.#limits = { threshold: policy.threshold, windowMs: policy.durationMs }
  }

  /** begin counts a try. Throws CLIENT_LOCKED_OUT with the time left. */
  async begin(clientKey: string, phone: string): Promise<LockoutTry> {
    const now = this.#clock.now()
    const admission = await this.#store.beginTry(clientKey, phone, now, this.#limits)
    if (!admission.admitted) {
      const retryAfterMs =
        admission.lockedUntil === undefined ? IN_FLIGHT_RETRY_MS : admission.lockedUntil - now
      throw new AuthError('CLIENT_LOCKED_OUT', { retryAfterMs })
    }
    let ended = false
    const end = (step: 'failTry' | 'succeedTry' | 'releaseTry') => async (): Promise<void> => {
      if (ended) return
      ended = true
      await this.#store[step](clientKey, phone, this.#clock.now(), this.#limits)
    }
    return { fail: end('failTry'), succeed: end('succeedTry'), release: end('releaseTry') }
  }
}
