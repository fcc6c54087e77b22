// Recent sends kept to replay: enough to follow the provider's spread, bounded.
const SAMPLES = 64

/**
 * How a real send ended, as far as a no-send path must mimic it: sent (or as good as), or refused
 * for now with how long the number is not tried again.
 */
export type SendOutcome = { refused: false } | { refused: true; retryAfterMs: number }

const SENT: SendOutcome = { refused: false }

/**
 * SendPacer makes "we sent nothing" look like "we sent an SMS". RequestLoginCode for an unknown
 * number, Register for a verified one and RequestPhoneChange to a taken one send nothing, and a
 * faster answer, or an OK while the provider refuses sends, would tell a remote caller which
 * numbers have accounts. The pacer keeps the last real sends; the no-send path replays one of
 * them, drawn at random: it waits as long as that send took and ends as it ended. So its latency
 * has the distribution of a real send, and during a provider outage (most recent sends refused)
 * it fails about as often as a real send would.
 */
export class SendPacer {
  readonly #samples: { ms: number; outcome: SendOutcome }[] = []
  #next = 0
  readonly #sleep: (ms: number) => Promise<void>
  readonly #random: () => number

  constructor(
    sleep: (ms: number) => Promise<void>,
    // Not a secret: which past send is replayed only needs to be unpredictable enough to shape
    // the distribution.
    random = Math.random,
  ) {
    this.#sleep = sleep
    this.#random = random
  }

  /**
   * observe records how long a real send took and whether the provider refused it for now
   * (transient). Permanent refusals belong to their number and are not replayed elsewhere.
   */
  observe(durationMs: number, outcome: SendOutcome = SENT): void {
    const sample = { ms: durationMs, outcome }
    if (this.#samples.length < SAMPLES) this.#samples.push(sample)
    else this.#samples[this.#next] = sample
    this.#next = (this.#next + 1) % SAMPLES
  }

  /** pace waits as long as a real send took, and tells how that send ended. */
  async pace(): Promise<SendOutcome> {
    const n = this.#samples.length
    const sample = n === 0 ? undefined : this.#samples[Math.floor(this.#random() * n)]
    // Sub-millisecond sends (console, local sinks) are below what a remote caller can measure.
    if (sample !== undefined && sample.ms >= 1) await this.#sleep(sample.ms)
    return sample?.outcome ?? SENT
  }
}
