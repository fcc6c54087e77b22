import { sql, type Kysely } from 'kysely'
import type { AnswerResult, CodeStore } from '../auth/auth-store.js'
import type { Database } from './database.js'
import { guarded } from './store-errors.js'

/**
 * PostgresCodeStore keeps live challenges in the codes table, one row per number and purpose.
 * answer() is a single UPDATE: it claims a try only while tries < max_tries and the code is
 * neither consumed nor expired, and marks it consumed when the MAC matches. Concurrent answers
 * on any replica queue on the row lock and each re-checks the WHERE on the row as the one before
 * left it, so no more than max_tries comparisons happen and at most one succeeds.
 *
 * The MACs are compared by the database, not in constant time. That reveals nothing usable: the
 * stored value is an HMAC under a key the caller does not know, so timing can at best leak bytes
 * of a MAC, never digits of the code.
 */
export function createPostgresCodeStore(
  db: Kysely<Database>,
  onUnavailable: (cause: unknown) => void,
): CodeStore {
  const run = guarded(onUnavailable)
  return {
    issue: (c) =>
      run(async () => {
        const row = {
          phone: c.subject,
          purpose: c.purpose,
          code_hmac: c.codeHash,
          expires_at: c.expiresAt,
          tries: 0,
          max_tries: c.maxAttempts,
          consumed: false,
          password_hash: c.passwordHash,
          target: c.target,
          requested_by: c.requestedBy,
        }
        await db
          .insertInto('codes')
          .values(row)
          .onConflict((oc) => oc.columns(['phone', 'purpose']).doUpdateSet(row))
          .execute()
      }),

    answer: (purpose, subject, candidates, now) =>
      run(async (): Promise<AnswerResult> => {
        const row = await db
          .updateTable('codes')
          .set({
            tries: sql`tries + 1`,
            consumed: sql`code_hmac in (${sql.join(candidates.map((c) => sql`${c}`))})`,
          })
          .where('phone', '=', subject)
          .where('purpose', '=', purpose)
          .where('consumed', '=', false)
          .where('expires_at', '>', now)
          .where((eb) => eb('tries', '<', eb.ref('max_tries')))
          .returning(['consumed', 'password_hash', 'requested_by', 'target'])
          .executeTakeFirst()
        if (row?.consumed !== true) return { ok: false, compared: row !== undefined }
        return {
          ok: true,
          passwordHash: row.password_hash,
          requestedBy: row.requested_by,
          target: row.target,
        }
      }),

    pendingPassword: (phone, clientKey, now) =>
      run(async () => {
        const row = await db
          .selectFrom('codes')
          .select('password_hash')
          .where('phone', '=', phone)
          .where('purpose', '=', 'register')
          .where('requested_by', '=', clientKey)
          .where('consumed', '=', false)
          .where('expires_at', '>', now)
          .where((eb) => eb('tries', '<', eb.ref('max_tries')))
          .executeTakeFirst()
        return row?.password_hash ?? undefined
      }),

    discard: (challenges) =>
      run(async () => {
        if (challenges.length === 0) return
        await db
          .deleteFrom('codes')
          .where((eb) =>
            eb.or(
              challenges.map((c) =>
                eb.and([eb('phone', '=', c.subject), eb('purpose', '=', c.purpose)]),
              ),
            ),
          )
          .execute()
      }),

    size: () => undefined,
  }
}
