/**
 * SendPacer makes "we sent nothing" take as long as "we sent an SMS". RequestLoginCode for an
 * unknown number and Register for a verified one send nothing, and a faster answer would tell a
 * remote caller which numbers have accounts. The pacer keeps a moving average of real send times
 * and the no-send path waits that long.
 */
export class SendPacer {
  #averageMs = 0
  readonly #sleep: (ms: number) => Promise<void>

  constructor(sleep: (ms: number) => Promise<void>) {
    this.#sleep = sleep
  }

  /** observe records how long a real send took. */
  observe(durationMs: number): void {
    // An exponentially weighted mean follows a drifting provider without keeping a history.
    this.#averageMs = this.#averageMs === 0 ? durationMs : this.#averageMs * 0.9 + durationMs * 0.1
  }

  /** pace waits as long as a typical send. */
  async pace(): Promise<void> {
    // Sub-millisecond sends (console, local sinks) are below what a remote caller can measure.
    if (this.#averageMs >= 1) await this.#sleep(this.#averageMs)
  }
}
