import { sql, type Kysely } from 'kysely'
import { AuthError } from '../auth/auth-error.js'
import type { SendLimiter, SendLimits, SendReservation } from '../auth/auth-store.js'
import {
  clientRefusal,
  HOUR_MS,
  liveDelivery,
  numberRefusal,
  refill,
} from '../auth/send-throttle.js'
import {
  budgetRefusal,
  budgetWindows,
  checkLimits,
  type SmsBudgetLimits,
} from '../auth/sms-budget.js'
import type { Database } from './database.js'
import { releaseSmsBudgets, throwIfRefused, windowArguments } from './postgres-sms-budget.js'
import { guarded } from './store-errors.js'

/** What otpauth_reserve_send answers: the refusing rule, or the number's delivery marks. */
interface ReserveRow {
  refused: 'number' | 'client' | 'budget' | null
  refused_budgets: number[] | null
  failing_until: number | null
  undeliverable_until: number | null
}

/**
 * PostgresSendLimiter applies the send limits and SMS budgets across replicas, in one round trip
 * per send: a call of otpauth_reserve_send (migration 0007). The per-number rule (cooldown and
 * hourly cap) is one upsert that appends the send only if both hold; the client bucket is another
 * that takes a token only if one is there; an SMS then charges its budgets as
 * createPostgresSmsBudget does. Each is atomic on its row, so 60 concurrent sends for one number
 * let exactly one through. If a later step refuses, the earlier ones are taken back in the same
 * statement, while their rows are still locked, so no other send sees them. Refusals of the
 * number or client read the row once more to say how long to wait.
 */
export function createPostgresSendLimiter(
  db: Kysely<Database>,
  limits: SendLimits,
  budgetLimits: SmsBudgetLimits,
  onUnavailable: (cause: unknown) => void,
): SendLimiter {
  checkLimits(budgetLimits)
  const run = guarded(onUnavailable)
  const ratePerMs = limits.perClientPerHour / HOUR_MS

  const takeBack = async (phone: string, now: number): Promise<void> => {
    await db
      .updateTable('number_sends')
      .set({ sends: sql`array_remove(sends, ${now}::bigint)` })
      .where('phone', '=', phone)
      .execute()
  }
  const refund = async (clientKey: string): Promise<void> => {
    await db
      .updateTable('client_sends')
      .set({ tokens: sql`least(${limits.perClientPerHour}::float8, tokens + 1)` })
      .where('client_key', '=', clientKey)
      .execute()
  }

  const numberRefusalNow = async (phone: string, now: number): Promise<Error> => {
    const row = await db
      .selectFrom('number_sends')
      .select(['sends', 'cooldown_ended_at'])
      .where('phone', '=', phone)
      .executeTakeFirst()
    // Refused, yet nothing refuses now (another replica's take-back): ask for the shortest wait.
    return (
      numberRefusal(row?.sends ?? [], now, limits, row?.cooldown_ended_at) ??
      new AuthError('RESEND_TOO_SOON', { retryAfterMs: 1 })
    )
  }
  const clientRefusalNow = async (clientKey: string, now: number): Promise<Error> => {
    const row = await db
      .selectFrom('client_sends')
      .select(['tokens', 'updated_at'])
      .where('client_key', '=', clientKey)
      .executeTakeFirst()
    const bucket = refill(
      row === undefined ? undefined : { tokens: row.tokens, updatedAt: row.updated_at },
      now,
      limits,
    )
    return clientRefusal({ ...bucket, tokens: Math.min(bucket.tokens, 0.999) }, now, limits)
  }

  return {
    markDelivery: (phone, mark) =>
      run(async () => {
        const marks = {
          failing_until: mark.state === 'failing' ? mark.until : 0,
          undeliverable_until: mark.state === 'undeliverable' ? mark.until : 0,
        }
        // A number with no send on record yet (its first send failed) gets a row for the mark.
        await db
          .insertInto('number_sends')
          .values({ phone, sends: sql`array[]::bigint[]`, ...marks })
          .onConflict((oc) => oc.column('phone').doUpdateSet(marks))
          .execute()
      }),

    endCooldown: (keys, now) =>
      run(async () => {
        await db
          .updateTable('number_sends')
          .set({ cooldown_ended_at: sql`greatest(cooldown_ended_at, ${now}::bigint)` })
          .where('phone', 'in', keys)
          .execute()
      }),

    reserve: (phone, clientKey, now, budget) =>
      run(async (): Promise<SendReservation> => {
        const windows = budget === undefined ? [] : budgetWindows(budget, now, budgetLimits)
        // One round trip: otpauth_reserve_send (migration 0007) is the two upserts, the budget
        // charge (otpauth_charge_sms_budgets, see createPostgresSmsBudget) and the take-backs
        // described above, in that order.
        const { rows } = await sql<ReserveRow>`select * from otpauth_reserve_send(
          ${phone}, ${clientKey}, ${now}::bigint, ${limits.cooldownMs}::bigint,
          ${limits.perNumberPerHour}::integer, ${limits.perClientPerHour}::float8,
          ${ratePerMs}::float8, ${windowArguments(windows)}
        )`.execute(db)
        const row = rows[0]
        if (row === undefined || row.refused === 'number') throw await numberRefusalNow(phone, now)
        if (row.refused === 'client') throw await clientRefusalNow(clientKey, now)
        if (row.refused === 'budget') {
          throwIfRefused(windows, row.refused_budgets, now)
          throw budgetRefusal(windows, now) // refused, naming no window: all of them
        }
        const failingUntil = row.failing_until ?? 0
        const undeliverableUntil = row.undeliverable_until ?? 0
        const delivery = liveDelivery(
          undeliverableUntil > now
            ? { state: 'undeliverable', until: undeliverableUntil }
            : { state: 'failing', until: failingUntil },
          now,
        )
        let released = false
        return {
          resendAvailableAt: now + limits.cooldownMs,
          delivery,
          release: () => {
            if (released) return Promise.resolve()
            released = true
            return run(async () => {
              if (windows.length > 0) await releaseSmsBudgets(db, windows)
              await takeBack(phone, now)
              await refund(clientKey)
            })
          },
        }
      }),
  }
}
