import type { SendLimiter, SendReservation } from './auth-store.js'
import type { SmsBudget } from './sms-budget.js'

/**
 * withSmsBudget is a SendLimiter that, given budget keys, also charges the SMS budgets: the
 * embedded store's two in-process steps, where the PostgreSQL limiter takes both in one statement.
 * A budget refusal gives the send reservation back, so a refused send leaves nothing charged.
 */
export function withSmsBudget(limiter: SendLimiter, budget: SmsBudget): SendLimiter {
  return {
    endCooldown: (keys, now) => limiter.endCooldown(keys, now),
    markDelivery: (phone, mark) => limiter.markDelivery(phone, mark),
    async reserve(phone, clientKey, now, keys): Promise<SendReservation> {
      const reservation = await limiter.reserve(phone, clientKey, now)
      if (keys === undefined) return reservation
      const charge = await budget.charge(keys, now).catch(async (error: unknown) => {
        await reservation.release()
        throw error
      })
      return {
        ...reservation,
        release: async () => {
          await charge.release()
          await reservation.release()
        },
      }
    },
  }
}
