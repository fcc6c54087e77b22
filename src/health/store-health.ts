import type { Logger } from 'pino'

/**
 * StoreHealth follows the shared database: the first failed call marks the replica NOT_SERVING
 * (load balancers stop sending it calls that would fail), then a probe runs every `probeMs` until
 * the database answers again, and the replica marks itself SERVING.
 */
export class StoreHealth {
  readonly #ping: () => Promise<void>
  readonly #setServing: (serving: boolean) => void
  readonly #log: Logger
  readonly #probeMs: number
  #down = false
  #stopped = false
  #timer: NodeJS.Timeout | undefined

  constructor(options: {
    ping: () => Promise<void>
    setServing: (serving: boolean) => void
    log: Logger
    probeMs: number
  }) {
    this.#ping = options.ping
    this.#setServing = options.setServing
    this.#log = options.log
    this.#probeMs = options.probeMs
  }

  /** unavailable reports a failed database call. */
  unavailable(cause: unknown): void {
    if (this.#down || this.#stopped) return
    this.#down = true
    this.#setServing(false)
    const message = cause instanceof Error ? cause.message : String(cause)
    this.#log.warn({ reason: message }, 'database unavailable: NOT_SERVING until it answers')
    this.#schedule()
  }

  /**
   * suspect asks the database now, after a hint that it may be gone (an idle connection was
   * dropped: a server restart, or just an idle timeout); NOT_SERVING only if it does not answer.
   */
  suspect(): void {
    if (this.#down || this.#stopped) return
    this.#ping().catch((cause: unknown) => {
      this.unavailable(cause)
    })
  }

  stop(): void {
    this.#stopped = true
    clearTimeout(this.#timer)
  }

  #schedule(): void {
    this.#timer = setTimeout(() => {
      this.#ping().then(
        () => {
          if (this.#stopped) return
          this.#down = false
          this.#setServing(true)
          this.#log.info('database reachable again: SERVING')
        },
        () => {
          if (!this.#stopped) this.#schedule()
        },
      )
    }, this.#probeMs)
    this.#timer.unref()
  }
}
