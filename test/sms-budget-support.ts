/** Shared by the SMS budget tests: the instants, keys and helpers they charge with. */
import { expect } from 'vitest'
import { AuthError } from '../src/auth/auth-error.js'
import type { BudgetCharge, SmsBudgetKeys, SmsBudgetLimits } from '../src/auth/sms-budget.js'
import { openPostgres, type OpenPostgres } from '../src/store/postgres.js'

export const MINUTE = 60_000
export const HOUR = 60 * MINUTE
export const DAY = 24 * HOUR
export const MIDNIGHT = Date.UTC(2026, 2, 10)
/** 10:15 UTC: 45 minutes left in the hour, 13 h 45 min in the day. */
export const T = MIDNIGHT + 10 * HOUR + 15 * MINUTE

export const SAN_FRANCISCO = { country: 'US', prefix: '+141555' }
export const LOS_ANGELES = { country: 'US', prefix: '+121355' }
export const NEW_YORK = { country: 'US', prefix: '+121255' }
export const LONDON = { country: 'GB', prefix: '+442071' }
export const BERLIN = { country: 'DE', prefix: '+49301' }

/** US keys with a prefix of their own for each i. */
export const usPrefix = (i: number): SmsBudgetKeys => ({ country: 'US', prefix: `+1${200 + i}55` })

export function limits(overrides: Partial<SmsBudgetLimits>): SmsBudgetLimits {
  return { globalPerDay: 1000, perCountryPerDay: 1000, perPrefixPerHour: 1000, ...overrides }
}

/** refusal is the AuthError a charge was refused with; fails the test if it was not refused. */
export async function refusal(charge: Promise<BudgetCharge>): Promise<AuthError> {
  const outcome = await charge.then(
    () => undefined,
    (error: unknown) => error,
  )
  expect(outcome, 'the charge should have been refused').toBeInstanceOf(AuthError)
  return outcome as AuthError
}

/** connect opens a pool of its own on a test database, as a replica would. */
export function connect(url: string, poolMax: number): OpenPostgres {
  return openPostgres({
    url,
    poolMax,
    connectTimeoutMs: 5_000,
    statementTimeoutMs: 10_000,
    applicationName: 'otpauth-sms-budget-test',
    onIdleError: () => undefined,
  })
}
