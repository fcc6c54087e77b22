import { AuthError } from '../auth/auth-error.js'
import type { BudgetCharge, SmsBudget, SmsBudgetKeys } from '../auth/sms-budget.js'
import type { OtpAuthMetrics } from './otpauth-metrics.js'

/** MeteredSmsBudget is an SmsBudget that counts refusals by the budget that refused. */
export class MeteredSmsBudget implements SmsBudget {
  readonly #budget: SmsBudget
  readonly #metrics: OtpAuthMetrics

  constructor(budget: SmsBudget, metrics: OtpAuthMetrics) {
    this.#budget = budget
    this.#metrics = metrics
  }

  async charge(keys: SmsBudgetKeys, now: number): Promise<BudgetCharge> {
    try {
      return await this.#budget.charge(keys, now)
    } catch (error) {
      if (error instanceof AuthError && error.reason === 'SMS_BUDGET_EXHAUSTED') {
        for (const budget of (error.metadata?.['budget'] ?? 'unknown').split(',')) {
          this.#metrics.budgetRefused(budget, keys.country)
        }
      }
      throw error
    }
  }
}
