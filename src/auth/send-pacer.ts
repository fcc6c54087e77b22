import { AuthError } from './auth-error.js'

// How long a failed real send makes the no-send path fail too.
const FAILURE_MIRROR_MS = 60_000

/**
 * SendPacer makes "we sent nothing" look like "we sent an SMS". RequestLoginCode for an unknown
 * number and Register for a verified one send nothing, and a faster answer, or an OK while real
 * sends fail, would tell a remote caller which numbers have accounts. The pacer keeps a moving
 * average of real send times and the outcome of the last one; the no-send path waits that long
 * and, while the SMS provider is failing, fails the same way.
 */
export class SendPacer {
  #averageMs = 0
  #failingUntil = 0
  readonly #sleep: (ms: number) => Promise<void>
  readonly #monotonicNow: () => number

  constructor(sleep: (ms: number) => Promise<void>, monotonicNow = () => performance.now()) {
    this.#sleep = sleep
    this.#monotonicNow = monotonicNow
  }

  /** observe records how long a real send took and whether it was accepted. */
  observe(durationMs: number, accepted: boolean): void {
    // An exponentially weighted mean follows a drifting provider without keeping a history.
    this.#averageMs = this.#averageMs === 0 ? durationMs : this.#averageMs * 0.9 + durationMs * 0.1
    this.#failingUntil = accepted ? 0 : this.#monotonicNow() + FAILURE_MIRROR_MS
  }

  /** pace waits as long as a typical send. Throws SMS_UNAVAILABLE while real sends fail. */
  async pace(): Promise<void> {
    // Sub-millisecond sends (console, local sinks) are below what a remote caller can measure.
    if (this.#averageMs >= 1) await this.#sleep(this.#averageMs)
    if (this.#monotonicNow() < this.#failingUntil) {
      throw new AuthError('SMS_UNAVAILABLE', {
        cause: new Error('mirroring the last real send, which failed'),
      })
    }
  }
}
