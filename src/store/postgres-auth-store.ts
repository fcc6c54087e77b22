import { sql, type ExpressionBuilder, type Kysely, type Transaction } from 'kysely'
import type {
  AuthStore,
  LockoutLimits,
  PhoneChange,
  SessionProof,
  User,
} from '../auth/auth-store.js'
import type { Database } from './database.js'
import { ANY_LOGIN, SESSION_COLUMNS, toSessionRecord } from './session-rows.js'
import { guarded } from './store-errors.js'

const USER_COLUMNS = ['id', 'phone', 'password_hash', 'verified_at', 'email'] as const

function toUser(row: {
  id: string
  phone: string
  password_hash: string | null
  verified_at: number | null
  email: string | null
}): User {
  return {
    id: row.id,
    phone: row.phone,
    passwordHash: row.password_hash,
    verifiedAt: row.verified_at,
    email: row.email,
  }
}

/**
 * PostgresAuthStore is the AuthStore shared by many replicas. Each method is one statement, one
 * transaction, or one call of a function (migration 0007) that does a transaction's work in one
 * round trip. Tries lock the client's lockout row first, so that tries counted by different
 * replicas serialise on it (read committed is enough: every decision is taken under that lock,
 * never on a read made before it).
 */
export function createPostgresAuthStore(
  db: Kysely<Database>,
  onUnavailable: (cause: unknown) => void,
): AuthStore {
  const run = guarded(onUnavailable)

  const findUser = async (phone: string): Promise<User | undefined> => {
    const row = await db
      .selectFrom('users')
      .select(USER_COLUMNS)
      .where('phone', '=', phone)
      .executeTakeFirst()
    return row === undefined ? undefined : toUser(row)
  }

  /** addNumberFailure counts a failure against the number, only below `limit` when one is given. */
  const addNumberFailure = (phone: string, now: number, limit: number | undefined) =>
    db
      .insertInto('number_failures')
      .values({ phone, failures: 1, last_failure_at: now })
      .onConflict((oc) => {
        const update = oc.column('phone').doUpdateSet((eb) => ({
          failures: eb('number_failures.failures', '+', 1),
          last_failure_at: eb.ref('excluded.last_failure_at'),
        }))
        return limit === undefined ? update : update.where('number_failures.failures', '<', limit)
      })
      .returning('failures')
      .executeTakeFirst()

  /**
   * provenUser is the account behind a live, privileged session, with the session and account
   * rows locked to the end of the transaction: a concurrent revocation or change waits for it.
   */
  const provenUser = async (
    trx: Transaction<Database>,
    proof: SessionProof,
  ): Promise<User | undefined> => {
    const row = await trx
      .selectFrom('sessions')
      .innerJoin('users', 'users.id', 'sessions.user_id')
      .select([
        'users.id',
        'users.phone',
        'users.password_hash',
        'users.verified_at',
        'users.email',
      ])
      .where('sessions.token_hash', '=', proof.tokenHash)
      .where('sessions.expires_at', '>', proof.now)
      .where(
        (eb) => eb.fn.coalesce('sessions.authenticated_at', 'sessions.created_at'),
        '>',
        proof.authenticatedSince,
      )
      .forUpdate()
      .executeTakeFirst()
    return row === undefined ? undefined : toUser(row)
  }
  const endOtherSessions = (trx: Transaction<Database>, userId: string, keep: Buffer) =>
    trx
      .deleteFrom('sessions')
      .where('user_id', '=', userId)
      .where('token_hash', '!=', keep)
      .execute()

  const changePhone = (proof: SessionProof, newPhone: string): Promise<PhoneChange> =>
    db.transaction().execute(async (trx) => {
      const user = await provenUser(trx, proof)
      if (user === undefined) return { changed: false, why: 'session' }
      const holder = await trx
        .selectFrom('users')
        .select('verified_at')
        .where('phone', '=', newPhone)
        .forUpdate()
        .executeTakeFirst()
      if (holder?.verified_at != null) return { changed: false, why: 'taken' }
      // A pending account proves nothing about the number; the code just proved who owns it.
      await trx
        .deleteFrom('users')
        .where('phone', '=', newPhone)
        .where('verified_at', 'is', null)
        .execute()
      await trx
        .updateTable('users')
        .set({ phone: newPhone, updated_at: proof.now })
        .where('id', '=', user.id)
        .execute()
      await endOtherSessions(trx, user.id, proof.tokenHash)
      return { changed: true, oldPhone: user.phone }
    })

  return {
    findUserByPhone: (phone) => run(() => findUser(phone)),

    savePendingUser: (phone, now, id) =>
      run(async () => {
        const row = await db
          .insertInto('users')
          .values({
            id,
            phone,
            password_hash: null,
            verified_at: null,
            created_at: now,
            updated_at: now,
          })
          .onConflict((oc) =>
            oc
              .column('phone')
              .doUpdateSet((eb) => ({ updated_at: eb.ref('excluded.updated_at') }))
              .where('users.verified_at', 'is', null),
          )
          .returning(USER_COLUMNS)
          .executeTakeFirst()
        return row === undefined ? mustExist(await findUser(phone)) : toUser(row)
      }),

    verifyUser: (phone, passwordHash, now, id) =>
      run(async () => {
        const row = await db
          .insertInto('users')
          .values({
            id,
            phone,
            password_hash: passwordHash,
            verified_at: now,
            created_at: now,
            updated_at: now,
          })
          .onConflict((oc) =>
            oc
              .column('phone')
              .doUpdateSet((eb) => ({
                password_hash: eb.ref('excluded.password_hash'),
                verified_at: eb.ref('excluded.verified_at'),
                updated_at: eb.ref('excluded.updated_at'),
              }))
              .where('users.verified_at', 'is', null),
          )
          .returning(USER_COLUMNS)
          .executeTakeFirst()
        return row === undefined ? mustExist(await findUser(phone)) : toUser(row)
      }),

    // One round trip each: otpauth_begin_try / otpauth_fail_try (migration 0007) are the
    // transactions they replace, run on the server under the client's row lock.
    beginTry: (clientKey, phone, now, { threshold, windowMs }: LockoutLimits) =>
      run(async () => {
        const { rows } = await sql<{ result: number }>`select otpauth_begin_try(
          ${clientKey}, ${phone}, ${now}::bigint, ${now - windowMs}::bigint, ${threshold}::integer
        ) as result`.execute(db)
        const result = rows[0]?.result ?? 0 // no answer: refuse (fail closed)
        if (result < 0) return { admitted: true as const }
        // The try is a failure on record until it succeeds: a replica that dies mid-try leaves
        // it counted (fail closed) until the window forgets it.
        return { admitted: false as const, lockedUntil: result > 0 ? result : undefined }
      }),

    failTry: (clientKey, _phone, now, { threshold, windowMs }) =>
      run(async () => {
        const { rows } = await sql<{ until: number | null }>`select otpauth_fail_try(
          ${clientKey}, ${now - windowMs}::bigint, ${threshold}::integer, ${now + windowMs}::bigint
        ) as until`.execute(db)
        const until = rows[0]?.until
        return until ?? undefined
      }),

    succeedTry: (clientKey, phone) =>
      run(async () => {
        await db
          .deleteFrom('client_failures')
          .where('client_key', '=', clientKey)
          .where('phone', '=', phone)
          .execute()
      }),

    releaseTry: (clientKey, phone) =>
      run(async () => {
        const mine = (eb: ExpressionBuilder<Database, 'client_failures'>) =>
          eb.and([eb('client_key', '=', clientKey), eb('phone', '=', phone)])
        await db
          .updateTable('client_failures')
          .set((eb) => ({ failures: eb('failures', '-', 1) }))
          .where(mine)
          .execute()
        await db.deleteFrom('client_failures').where(mine).where('failures', '<=', 0).execute()
      }),

    beginNumberTry: (phone, now, limit) =>
      run(async () => (await addNumberFailure(phone, now, limit)) !== undefined),

    addNumberFailure: (phone, now) =>
      run(async () => {
        await addNumberFailure(phone, now, undefined)
      }),

    clearNumberFailures: (phone) =>
      run(async () => {
        await db.deleteFrom('number_failures').where('phone', '=', phone).execute()
      }),

    createSession: (session) =>
      run(async () => {
        await db
          .insertInto('sessions')
          .values({
            token_hash: session.tokenHash,
            id: session.id,
            user_id: session.userId,
            created_at: session.now,
            authenticated_at: session.now,
            client_key: session.clientKey,
            expires_at: session.expiresAt,
          })
          .execute()
      }),

    findSession: (tokenHash, now) =>
      run(async () => {
        const row = await db
          .selectFrom('sessions')
          .innerJoin('users', 'users.id', 'sessions.user_id')
          .select(SESSION_COLUMNS)
          .where('sessions.token_hash', '=', tokenHash)
          .where('sessions.expires_at', '>', now)
          .executeTakeFirst()
        return row === undefined ? undefined : toSessionRecord(row)
      }),

    listSessions: (userId, now, limit) =>
      run(async () => {
        const rows = await db
          .selectFrom('sessions')
          .innerJoin('users', 'users.id', 'sessions.user_id')
          .select(SESSION_COLUMNS)
          .where('sessions.user_id', '=', userId)
          .where('sessions.expires_at', '>', now)
          .orderBy('authenticated_at', 'desc')
          .orderBy('sessions.id')
          .limit(limit)
          .execute()
        return rows.map(toSessionRecord)
      }),

    deleteSession: (tokenHash) =>
      run(async () => {
        await db.deleteFrom('sessions').where('token_hash', '=', tokenHash).execute()
      }),

    revokeSession: (userId, id, now) =>
      run(async () => {
        const result = await db
          .deleteFrom('sessions')
          .where('id', '=', id)
          .where('user_id', '=', userId)
          .where('expires_at', '>', now)
          .executeTakeFirst()
        return result.numDeletedRows > 0n
      }),

    endAllSessions: (tokenHash, now) =>
      run(async () => {
        await db
          .deleteFrom('sessions')
          .where('user_id', '=', (eb) =>
            eb
              .selectFrom('sessions as own')
              .select('own.user_id')
              .where('own.token_hash', '=', tokenHash)
              .where('own.expires_at', '>', now),
          )
          .execute()
      }),

    changePassword: (proof, passwordHash) =>
      run(() =>
        db.transaction().execute(async (trx) => {
          const user = await provenUser(trx, proof)
          if (user === undefined) return false
          await trx
            .updateTable('users')
            .set({ password_hash: passwordHash, updated_at: proof.now })
            .where('id', '=', user.id)
            .execute()
          await endOtherSessions(trx, user.id, proof.tokenHash)
          await trx.deleteFrom('number_failures').where('phone', '=', user.phone).execute()
          return true
        }),
      ),

    changePhone: (proof, newPhone) =>
      run(async () => {
        try {
          return await changePhone(proof, newPhone)
        } catch (error) {
          // A Register for the new number inserted a pending row after our check: the unique
          // index refused the move; once more, and that row is the pending one we remove.
          if (!isUniqueViolation(error)) throw error
          return changePhone(proof, newPhone)
        }
      }),

    setEmail: (tokenHash, now, email) =>
      run(() =>
        db.transaction().execute(async (trx) => {
          // Any live session: every login time is after ANY_LOGIN.
          const user = await provenUser(trx, { tokenHash, now, authenticatedSince: ANY_LOGIN })
          if (user === undefined) return undefined
          await trx
            .updateTable('users')
            .set({ email, updated_at: now })
            .where('id', '=', user.id)
            .execute()
          return { previous: user.email }
        }),
      ),

    deleteAccount: (proof) =>
      run(() =>
        db.transaction().execute(async (trx) => {
          const user = await provenUser(trx, proof)
          if (user === undefined) return undefined
          // Sessions go with the account (foreign key, on delete cascade).
          await trx.deleteFrom('users').where('id', '=', user.id).execute()
          await trx.deleteFrom('number_failures').where('phone', '=', user.phone).execute()
          await trx
            .deleteFrom('codes')
            .where((eb) =>
              eb.or([
                eb.and([eb('phone', '=', user.phone), eb('purpose', 'in', ['register', 'login'])]),
                eb.and([
                  eb('phone', '=', user.id),
                  eb('purpose', 'in', ['phone_change', 'email_verify']),
                ]),
              ]),
            )
            .execute()
          return user
        }),
      ),

    pruneExpired: (now, retention) =>
      run(() =>
        db.transaction().execute(async (trx) => {
          // One replica prunes at a time; the others skip this round (the deletes are safe to
          // repeat, this only saves them the work).
          const { rows } = await sql<{ got: boolean }>`
            select pg_try_advisory_xact_lock(${PRUNE_LOCK}) as got`.execute(trx)
          if (rows[0]?.got !== true) return 0
          const deleted = await Promise.all([
            trx.deleteFrom('sessions').where('expires_at', '<=', now).executeTakeFirst(),
            trx
              .deleteFrom('lockouts')
              .where('locked_until', '<=', now)
              .where((eb) =>
                eb.not(
                  eb.exists(
                    eb
                      .selectFrom('client_failures')
                      .select('client_failures.client_key')
                      .whereRef('client_failures.client_key', '=', 'lockouts.client_key'),
                  ),
                ),
              )
              .executeTakeFirst(),
            trx
              .deleteFrom('client_failures')
              .where('last_failure_at', '<', now - retention.clientFailuresMs)
              .executeTakeFirst(),
            trx
              .deleteFrom('number_failures')
              .where('last_failure_at', '<', now - retention.numberFailuresMs)
              .executeTakeFirst(),
            trx
              .deleteFrom('users')
              .where('verified_at', 'is', null)
              .where('updated_at', '<', now - retention.pendingMs)
              .executeTakeFirst(),
            trx.deleteFrom('codes').where('expires_at', '<=', now).executeTakeFirst(),
            trx
              .deleteFrom('client_sends')
              .where('updated_at', '<', now - 3_600_000)
              .executeTakeFirst(),
            trx
              .deleteFrom('number_sends')
              .where(sql<boolean>`coalesce(sends[array_upper(sends, 1)], 0) <= ${now - 3_600_000}`)
              .where('failing_until', '<=', now)
              .where('undeliverable_until', '<=', now)
              .executeTakeFirst(),
          ])
          return deleted.reduce((n, r) => n + Number(r.numDeletedRows), 0)
        }),
      ),
  }
}

// pg_try_advisory_xact_lock's key for the pruning round; any constant shared by all replicas.
const PRUNE_LOCK = 7_135_513_442

function isUniqueViolation(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === '23505'
}

function mustExist(user: User | undefined): User {
  if (user === undefined) throw new Error('user row missing right after its upsert')
  return user
}
