import { LRUCache } from 'lru-cache'
import { AuthError } from './auth-error.js'
import type { Clock } from './clock.js'

const HOUR_MS = 3_600_000

export interface SendThrottleOptions {
  clock: Clock
  /** Minimum time between two codes to one number. */
  cooldownMs: number
  /** Codes to one number in any rolling hour. */
  perNumberPerHour: number
  /** Codes requested from one client address per hour (a token bucket: bursts up to this). */
  perClientPerHour: number
  /** Upper bound on tracked numbers and tracked clients each. */
  max: number
}

/** A reserved send; release() gives it back when the SMS could not be delivered. */
export interface SendReservation {
  readonly resendAvailableAt: number
  release(): void
}

interface Bucket {
  tokens: number
  updatedAt: number
}

/**
 * SendThrottle limits how often codes are sent, so nobody gets unlimited guesses (or unlimited SMS
 * spend) by asking for new codes. It applies to every number alike, registered or not, so its
 * answers reveal nothing about accounts. State is in memory and bounded by `max`.
 */
export class SendThrottle {
  readonly #options: SendThrottleOptions
  readonly #numbers: LRUCache<string, number[]>
  readonly #clients: LRUCache<string, Bucket>

  constructor(options: SendThrottleOptions) {
    this.#options = options
    this.#numbers = new LRUCache({ max: options.max })
    this.#clients = new LRUCache({ max: options.max })
  }

  /**
   * reserve checks every limit and, only if all pass, records the send. Synchronous, so two
   * concurrent calls for one number cannot both pass the cooldown.
   * Throws RESEND_TOO_SOON, NUMBER_SEND_LIMIT or CLIENT_SEND_LIMIT with the time to wait.
   */
  reserve(phone: string, clientKey: string): SendReservation {
    const { cooldownMs, perNumberPerHour, perClientPerHour } = this.#options
    const now = this.#options.clock.now()

    const sends = (this.#numbers.get(phone) ?? []).filter((t) => t > now - HOUR_MS)
    const last = sends.at(-1)
    if (last !== undefined && now - last < cooldownMs) {
      throw new AuthError('RESEND_TOO_SOON', { retryAfterMs: last + cooldownMs - now })
    }
    const oldest = sends[0]
    if (oldest !== undefined && sends.length >= perNumberPerHour) {
      throw new AuthError('NUMBER_SEND_LIMIT', { retryAfterMs: oldest + HOUR_MS - now })
    }

    const ratePerMs = perClientPerHour / HOUR_MS
    const stored = this.#clients.get(clientKey)
    const bucket: Bucket = {
      tokens: Math.min(
        perClientPerHour,
        stored === undefined
          ? perClientPerHour
          : stored.tokens + (now - stored.updatedAt) * ratePerMs,
      ),
      updatedAt: now,
    }
    if (bucket.tokens < 1) {
      throw new AuthError('CLIENT_SEND_LIMIT', {
        retryAfterMs: Math.ceil((1 - bucket.tokens) / ratePerMs),
      })
    }

    sends.push(now)
    this.#numbers.set(phone, sends)
    bucket.tokens -= 1
    this.#clients.set(clientKey, bucket)

    let released = false
    return {
      resendAvailableAt: now + cooldownMs,
      release: () => {
        if (released) return
        released = true
        const current = this.#numbers.get(phone)
        const i = current?.indexOf(now) ?? -1
        if (current !== undefined && i >= 0) current.splice(i, 1)
        const b = this.#clients.get(clientKey)
        if (b !== undefined) b.tokens = Math.min(perClientPerHour, b.tokens + 1)
      },
    }
  }
}
