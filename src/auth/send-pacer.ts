import { AuthError } from './auth-error.js'

// How long a failed real send makes the no-send path fail too.
const FAILURE_MIRROR_MS = 60_000
// Recent send times kept to replay: enough to follow the provider's spread, bounded.
const SAMPLES = 64

/**
 * SendPacer makes "we sent nothing" look like "we sent an SMS". RequestLoginCode for an unknown
 * number, Register for a verified one and RequestPhoneChange to a taken one send nothing, and a
 * faster answer, or an OK while real sends fail, would tell a remote caller which numbers have
 * accounts. The pacer keeps the last real send times and the outcome of the last send; the
 * no-send path waits one of those times, drawn at random, so its latency has the distribution of
 * a real send and not only its mean, and while the SMS provider is failing it fails the same way.
 */
export class SendPacer {
  readonly #samples: number[] = []
  #next = 0
  #failingUntil = 0
  readonly #sleep: (ms: number) => Promise<void>
  readonly #monotonicNow: () => number
  readonly #random: () => number

  constructor(
    sleep: (ms: number) => Promise<void>,
    monotonicNow = () => performance.now(),
    // Not a secret: which past send time is replayed only needs to be unpredictable enough to
    // shape the distribution.
    random = Math.random,
  ) {
    this.#sleep = sleep
    this.#monotonicNow = monotonicNow
    this.#random = random
  }

  /** observe records how long a real send took and whether it was accepted. */
  observe(durationMs: number, accepted: boolean): void {
    if (this.#samples.length < SAMPLES) this.#samples.push(durationMs)
    else this.#samples[this.#next] = durationMs
    this.#next = (this.#next + 1) % SAMPLES
    this.#failingUntil = accepted ? 0 : this.#monotonicNow() + FAILURE_MIRROR_MS
  }

  /** pace waits as long as a real send took. Throws SMS_UNAVAILABLE while real sends fail. */
  async pace(): Promise<void> {
    const n = this.#samples.length
    const ms = n === 0 ? 0 : (this.#samples[Math.floor(this.#random() * n)] ?? 0)
    // Sub-millisecond sends (console, local sinks) are below what a remote caller can measure.
    if (ms >= 1) await this.#sleep(ms)
    if (this.#monotonicNow() < this.#failingUntil) {
      throw new AuthError('SMS_UNAVAILABLE', {
        cause: new Error('mirroring the last real send, which failed'),
      })
    }
  }
}
