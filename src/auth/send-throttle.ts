import { LRUCache } from 'lru-cache'
import { AuthError } from './auth-error.js'
import type { NumberDelivery, SendLimiter, SendLimits, SendReservation } from './auth-store.js'

export const HOUR_MS = 3_600_000

export interface SendThrottleOptions extends SendLimits {
  /** Upper bound on tracked numbers and tracked clients each. */
  max: number
}

export interface Bucket {
  tokens: number
  updatedAt: number
}

/** A number's sends of the last hour (oldest first) and when a code sent to it was last answered. */
interface NumberSends {
  times: number[]
  cooldownEndedAt: number
  delivery: NumberDelivery
}

const DELIVERY_OK: NumberDelivery = { state: 'ok' }

/**
 * SendThrottle is the embedded SendLimiter. It limits how often codes are sent, so nobody gets unlimited guesses (or unlimited SMS
 * spend) by asking for new codes. It applies to every number alike, registered or not, so its
 * answers reveal nothing about accounts. State is in memory and bounded by `max`.
 */
export class SendThrottle implements SendLimiter {
  readonly #options: SendThrottleOptions
  readonly #numbers: LRUCache<string, NumberSends>
  readonly #clients: LRUCache<string, Bucket>

  constructor(options: SendThrottleOptions) {
    this.#options = options
    this.#numbers = new LRUCache({ max: options.max })
    this.#clients = new LRUCache({ max: options.max })
  }

  /** reserve checks and records in one synchronous step: no two calls interleave. */
  reserve(phone: string, clientKey: string, now: number): Promise<SendReservation> {
    try {
      return Promise.resolve(this.#reserve(phone, clientKey, now))
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)))
    }
  }

  endCooldown(keys: readonly string[], now: number): Promise<void> {
    for (const key of keys) {
      const stored = this.#numbers.get(key)
      if (stored !== undefined) stored.cooldownEndedAt = Math.max(stored.cooldownEndedAt, now)
    }
    return Promise.resolve()
  }

  markDelivery(phone: string, mark: Exclude<NumberDelivery, { state: 'ok' }>): Promise<void> {
    const stored = this.#numbers.get(phone)
    if (stored !== undefined) stored.delivery = mark
    else this.#numbers.set(phone, { times: [], cooldownEndedAt: 0, delivery: mark })
    return Promise.resolve()
  }

  #reserve(phone: string, clientKey: string, now: number): SendReservation {
    const limits = this.#options
    const stored = this.#numbers.get(phone)
    const recent = (stored?.times ?? []).filter((t) => t > now - HOUR_MS)
    const cooldownEndedAt = stored?.cooldownEndedAt ?? 0
    const refusal = numberRefusal(recent, now, limits, cooldownEndedAt)
    if (refusal !== undefined) throw refusal
    const bucket = refill(this.#clients.get(clientKey), now, limits)
    if (bucket.tokens < 1) throw clientRefusal(bucket, now, limits)

    // concat allocates exactly the elements (56 bytes for one send); push would grow the array
    // to room for 17 (184 bytes), and there may be `max` of these.
    const times = recent.concat(now)
    const delivery = liveDelivery(stored?.delivery, now)
    // The marker exempted the last send; this send is the last now, with a cooldown of its own.
    this.#numbers.set(phone, { times, cooldownEndedAt: 0, delivery })
    bucket.tokens -= 1
    this.#clients.set(clientKey, bucket)

    let released = false
    return {
      resendAvailableAt: now + limits.cooldownMs,
      delivery,
      release: () => {
        if (released) return Promise.resolve()
        released = true
        const current = this.#numbers.get(phone)?.times
        const i = current?.indexOf(now) ?? -1
        if (current !== undefined && i >= 0) current.splice(i, 1)
        const b = this.#clients.get(clientKey)
        if (b !== undefined) b.tokens = Math.min(limits.perClientPerHour, b.tokens + 1)
        return Promise.resolve()
      },
    }
  }
}

/** liveDelivery is the mark as it stands at `now`: an expired mark is no mark. */
export function liveDelivery(mark: NumberDelivery | undefined, now: number): NumberDelivery {
  return mark === undefined || mark.state === 'ok' || mark.until <= now ? DELIVERY_OK : mark
}

/**
 * numberRefusal applies the per-number rules to the number's send times of the last hour (oldest
 * first): the cooldown since the last send (unless a code was answered after it), then the hourly
 * cap. Undefined when a send may go.
 */
export function numberRefusal(
  sends: readonly number[],
  now: number,
  { cooldownMs, perNumberPerHour }: SendLimits,
  cooldownEndedAt = 0,
): AuthError | undefined {
  const recent = sends.filter((t) => t > now - HOUR_MS)
  const last = recent.at(-1)
  if (last !== undefined && last > cooldownEndedAt && now - last < cooldownMs) {
    return new AuthError('RESEND_TOO_SOON', { retryAfterMs: last + cooldownMs - now })
  }
  const oldest = recent[0]
  if (oldest !== undefined && recent.length >= perNumberPerHour) {
    return new AuthError('NUMBER_SEND_LIMIT', { retryAfterMs: oldest + HOUR_MS - now })
  }
  return undefined
}

/** refill is the client's bucket at `now`: full at first, refilled continuously up to the cap. */
export function refill(stored: Bucket | undefined, now: number, limits: SendLimits): Bucket {
  const ratePerMs = limits.perClientPerHour / HOUR_MS
  return {
    tokens: Math.min(
      limits.perClientPerHour,
      stored === undefined
        ? limits.perClientPerHour
        : stored.tokens + Math.max(0, now - stored.updatedAt) * ratePerMs,
    ),
    updatedAt: Math.max(now, stored?.updatedAt ?? now),
  }
}

/** clientRefusal is CLIENT_SEND_LIMIT with the time until the bucket holds a whole token. */
export function clientRefusal(bucket: Bucket, _now: number, limits: SendLimits): AuthError {
  const ratePerMs = limits.perClientPerHour / HOUR_MS
  return new AuthError('CLIENT_SEND_LIMIT', {
    retryAfterMs: Math.ceil((1 - bucket.tokens) / ratePerMs),
  })
}
