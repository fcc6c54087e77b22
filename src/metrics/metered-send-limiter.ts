import { AuthError } from '../auth/auth-error.js'
import type { SendLimiter, SendReservation } from '../auth/auth-store.js'
import type { SmsBudgetKeys } from '../auth/sms-budget.js'
import type { OtpAuthMetrics } from './otpauth-metrics.js'

/** MeteredSendLimiter is a SendLimiter that counts SMS budget refusals by the budget that refused. */
export class MeteredSendLimiter implements SendLimiter {
  readonly #limiter: SendLimiter
  readonly #metrics: OtpAuthMetrics

  constructor(limiter: SendLimiter, metrics: OtpAuthMetrics) {
    this.#limiter = limiter
    this.#metrics = metrics
  }

  async reserve(
    phone: string,
    clientKey: string,
    now: number,
    budget?: SmsBudgetKeys,
  ): Promise<SendReservation> {
    try {
      return await this.#limiter.reserve(phone, clientKey, now, budget)
    } catch (error) {
      if (error instanceof AuthError && error.reason === 'SMS_BUDGET_EXHAUSTED') {
        for (const refused of (error.metadata?.['budget'] ?? 'unknown').split(',')) {
          this.#metrics.budgetRefused(refused, budget?.country ?? 'unknown')
        }
      }
      throw error
    }
  }

  endCooldown(keys: readonly string[], now: number): Promise<void> {
    return this.#limiter.endCooldown(keys, now)
  }

  markDelivery(...args: Parameters<SendLimiter['markDelivery']>): Promise<void> {
    return this.#limiter.markDelivery(...args)
  }
}
