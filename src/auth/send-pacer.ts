// Recent send times kept to replay: enough to follow the provider's spread, bounded.
const SAMPLES = 64

/**
 * SendPacer makes "we sent nothing" take as long as "we sent an SMS". RequestLoginCode for an
 * unknown number, Register for a verified one and RequestPhoneChange to a taken one send nothing,
 * and a faster answer would tell a remote caller which numbers have accounts. The pacer keeps the
 * last real send times; the no-send path waits one of them, drawn at random, so its latency has
 * the distribution of a real send and not only its mean. (Failures are answered alike through the
 * per-number delivery marks of the SendLimiter, not here.)
 */
export class SendPacer {
  readonly #samples: number[] = []
  #next = 0
  readonly #sleep: (ms: number) => Promise<void>
  readonly #random: () => number

  constructor(
    sleep: (ms: number) => Promise<void>,
    // Not a secret: which past send time is replayed only needs to be unpredictable enough to
    // shape the distribution.
    random = Math.random,
  ) {
    this.#sleep = sleep
    this.#random = random
  }

  /** observe records how long a real send took, whatever its outcome. */
  observe(durationMs: number): void {
    if (this.#samples.length < SAMPLES) this.#samples.push(durationMs)
    else this.#samples[this.#next] = durationMs
    this.#next = (this.#next + 1) % SAMPLES
  }

  /** pace waits as long as a real send took. */
  async pace(): Promise<void> {
    const n = this.#samples.length
    const ms = n === 0 ? 0 : (this.#samples[Math.floor(this.#random() * n)] ?? 0)
    // Sub-millisecond sends (console, local sinks) are below what a remote caller can measure.
    if (ms >= 1) await this.#sleep(ms)
  }
}
