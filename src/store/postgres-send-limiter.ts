import { sql, type Kysely } from 'kysely'
import { AuthError } from '../auth/auth-error.js'
import type {
  NumberDelivery,
  SendLimiter,
  SendLimits,
  SendReservation,
} from '../auth/auth-store.js'
import {
  clientRefusal,
  HOUR_MS,
  liveDelivery,
  numberRefusal,
  refill,
} from '../auth/send-throttle.js'
import type { Database } from './database.js'
import { guarded } from './store-errors.js'

/**
 * PostgresSendLimiter applies the send limits across replicas. The per-number rule (cooldown and
 * hourly cap) is one upsert that appends the send only if both hold; the client bucket is another
 * that takes a token only if one is there. Each is atomic on its row, so 60 concurrent sends for
 * one number let exactly one through. The number is reserved first; if the client's bucket then
 * refuses, the number's send is taken back (a brief over-refusal at worst, never an extra send).
 * Refusals read the row once more to say how long to wait.
 */
export function createPostgresSendLimiter(
  db: Kysely<Database>,
  limits: SendLimits,
  onUnavailable: (cause: unknown) => void,
): SendLimiter {
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

  /** reserveNumber appends the send if the number's rules allow it; returns its delivery mark. */
  const reserveNumber = async (phone: string, now: number): Promise<NumberDelivery | undefined> => {
    const hourAgo = now - HOUR_MS
    const recent = sql`array(select t from unnest(number_sends.sends) t where t > ${hourAgo}::bigint order by t)`
    const row = await db
      .insertInto('number_sends')
      .values({ phone, sends: sql`array[${now}::bigint]` })
      .onConflict((oc) =>
        oc
          .column('phone')
          // The marker exempted the last send; this send is the last now, with its own cooldown.
          .doUpdateSet({ sends: sql`${recent} || ${now}::bigint`, cooldown_ended_at: 0 })
          .where(
            sql<boolean>`coalesce((select max(t) from unnest(number_sends.sends) t), 0) <= greatest(${now - limits.cooldownMs}::bigint, number_sends.cooldown_ended_at)`,
          )
          .where(sql<boolean>`cardinality(${recent}) < ${limits.perNumberPerHour}`),
      )
      .returning(['failing_until', 'undeliverable_until'])
      .executeTakeFirst()
    if (row === undefined) return undefined
    return liveDelivery(
      row.undeliverable_until > now
        ? { state: 'undeliverable', until: row.undeliverable_until }
        : { state: 'failing', until: row.failing_until },
      now,
    )
  }

  const reserveClient = async (clientKey: string, now: number): Promise<boolean> => {
    const refilled = sql`least(${limits.perClientPerHour}::float8, client_sends.tokens + greatest(0, ${now}::bigint - client_sends.updated_at) * ${ratePerMs}::float8)`
    const row = await db
      .insertInto('client_sends')
      .values({ client_key: clientKey, tokens: limits.perClientPerHour - 1, updated_at: now })
      .onConflict((oc) =>
        oc
          .column('client_key')
          .doUpdateSet({
            tokens: sql`${refilled} - 1`,
            updated_at: sql`greatest(client_sends.updated_at, ${now}::bigint)`,
          })
          .where(sql<boolean>`${refilled} >= 1`),
      )
      .returning('tokens')
      .executeTakeFirst()
    return row !== undefined
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

    reserve: (phone, clientKey, now) =>
      run(async (): Promise<SendReservation> => {
        const delivery = await reserveNumber(phone, now)
        if (delivery === undefined) throw await numberRefusalNow(phone, now)
        if (!(await reserveClient(clientKey, now))) {
          await takeBack(phone, now)
          throw await clientRefusalNow(clientKey, now)
        }
        let released = false
        return {
          resendAvailableAt: now + limits.cooldownMs,
          delivery,
          release: () => {
            if (released) return Promise.resolve()
            released = true
            return run(async () => {
              await takeBack(phone, now)
              await refund(clientKey)
            })
          },
        }
      }),
  }
}
