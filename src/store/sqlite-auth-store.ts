import type SQLite from 'better-sqlite3'
import type { Compilable, Kysely } from 'kysely'
import type {
  AuthStore,
  LockoutLimits,
  PhoneChange,
  SessionProof,
  TryAdmission,
  User,
} from '../auth/auth-store.js'
import type { Database } from './database.js'
import type { GroupCommit } from './group-commit.js'
import { param, prepare, type PreparedQuery } from './prepared-query.js'
import { ANY_LOGIN, SESSION_COLUMNS, toSessionRecord } from './session-rows.js'

interface UserRow {
  id: string
  phone: string
  password_hash: string | null
  verified_at: number | null
  email: string | null
}

function toUser(row: UserRow): User {
  return {
    id: row.id,
    phone: row.phone,
    passwordHash: row.password_hash,
    verifiedAt: row.verified_at,
    email: row.email,
  }
}

/**
 * SqliteAuthStore is the embedded AuthStore. Queries are written with Kysely, compiled once and run
 * as prepared better-sqlite3 statements. Each method runs synchronously to its end (the promise is
 * already settled when it returns), so its statements form one atomic step: nothing else runs on
 * the only thread in between.
 */
export function createSqliteAuthStore(
  sqlite: SQLite.Database,
  db: Kysely<Database>,
  commits?: GroupCommit,
): AuthStore {
  // With group commit, every write joins the batch transaction of this event-loop turn.
  const beforeWrite =
    commits === undefined
      ? undefined
      : () => {
          commits.enter()
        }
  const p = <Row>(query: Compilable<Row>): PreparedQuery<Row> => prepare(sqlite, query, beforeWrite)
  const q = {
    findUser: p(
      db
        .selectFrom('users')
        .select(['id', 'phone', 'password_hash', 'verified_at', 'email'])
        .where('phone', '=', param('phone')),
    ),
    upsertPending: p(
      db
        .insertInto('users')
        .values({
          id: param('id'),
          phone: param('phone'),
          password_hash: null,
          verified_at: null,
          created_at: param('now'),
          updated_at: param('now'),
        })
        .onConflict((oc) =>
          oc
            .column('phone')
            .doUpdateSet((eb) => ({ updated_at: eb.ref('excluded.updated_at') }))
            .where('users.verified_at', 'is', null),
        )
        .returning(['id', 'phone', 'password_hash', 'verified_at', 'email']),
    ),
    upsertVerified: p(
      db
        .insertInto('users')
        .values({
          id: param('id'),
          phone: param('phone'),
          password_hash: param('passwordHash'),
          verified_at: param('now'),
          created_at: param('now'),
          updated_at: param('now'),
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
        .returning(['id', 'phone', 'password_hash', 'verified_at', 'email']),
    ),
    findLockout: p(
      db
        .selectFrom('lockouts')
        .select('locked_until')
        .where('client_key', '=', param('clientKey'))
        .where('locked_until', '>', param('now')),
    ),
    lock: p(
      db
        .insertInto('lockouts')
        .values({ client_key: param('clientKey'), locked_until: param('until') })
        .onConflict((oc) =>
          oc.column('client_key').doUpdateSet((eb) => ({
            locked_until: eb.ref('excluded.locked_until'),
          })),
        ),
    ),
    countClientFailures: p(
      db
        .selectFrom('client_failures')
        .select((eb) => eb.fn.coalesce(eb.fn.sum<number>('failures'), eb.lit(0)).as('n'))
        .where('client_key', '=', param('clientKey'))
        .where('last_failure_at', '>=', param('since')),
    ),
    addClientFailure: p(
      db
        .insertInto('client_failures')
        .values({
          client_key: param('clientKey'),
          phone: param('phone'),
          failures: 1,
          last_failure_at: param('now'),
        })
        .onConflict((oc) =>
          oc.columns(['client_key', 'phone']).doUpdateSet((eb) => ({
            failures: eb
              .case()
              .when('client_failures.last_failure_at', '>=', param<number>('since'))
              .then(eb('client_failures.failures', '+', 1))
              .else(1)
              .end(),
            last_failure_at: eb.ref('excluded.last_failure_at'),
          })),
        ),
    ),
    clearClientFailures: p(
      db.deleteFrom('client_failures').where('client_key', '=', param('clientKey')),
    ),
    clearClientPhoneFailures: p(
      db
        .deleteFrom('client_failures')
        .where('client_key', '=', param('clientKey'))
        .where('phone', '=', param('phone')),
    ),
    hasClientPhoneFailure: p(
      db
        .selectFrom('client_failures')
        .select('failures')
        .where('client_key', '=', param('clientKey'))
        .where('phone', '=', param('phone')),
    ),
    beginNumberTry: p(
      db
        .insertInto('number_failures')
        .values({ phone: param('phone'), failures: 1, last_failure_at: param('now') })
        .onConflict((oc) =>
          oc
            .column('phone')
            .doUpdateSet((eb) => ({
              failures: eb('number_failures.failures', '+', 1),
              last_failure_at: eb.ref('excluded.last_failure_at'),
            }))
            .where('number_failures.failures', '<', param<number>('limit')),
        )
        .returning('failures'),
    ),
    addNumberFailure: p(
      db
        .insertInto('number_failures')
        .values({ phone: param('phone'), failures: 1, last_failure_at: param('now') })
        .onConflict((oc) =>
          oc.column('phone').doUpdateSet((eb) => ({
            failures: eb('number_failures.failures', '+', 1),
            last_failure_at: eb.ref('excluded.last_failure_at'),
          })),
        ),
    ),
    clearNumberFailures: p(db.deleteFrom('number_failures').where('phone', '=', param('phone'))),
    createSession: p(
      db.insertInto('sessions').values({
        token_hash: param('tokenHash'),
        id: param('id'),
        user_id: param('userId'),
        created_at: param('now'),
        authenticated_at: param('now'),
        client_key: param('clientKey'),
        expires_at: param('expiresAt'),
      }),
    ),
    findSession: p(
      db
        .selectFrom('sessions')
        .innerJoin('users', 'users.id', 'sessions.user_id')
        .select(SESSION_COLUMNS)
        .where('sessions.token_hash', '=', param('tokenHash'))
        .where('sessions.expires_at', '>', param('now')),
    ),
    listSessions: p(
      db
        .selectFrom('sessions')
        .innerJoin('users', 'users.id', 'sessions.user_id')
        .select(SESSION_COLUMNS)
        .where('sessions.user_id', '=', param('userId'))
        .where('sessions.expires_at', '>', param('now'))
        .orderBy('authenticated_at', 'desc')
        .orderBy('sessions.id')
        .limit(param('limit')),
    ),
    deleteSession: p(db.deleteFrom('sessions').where('token_hash', '=', param('tokenHash'))),
    revokeSession: p(
      db
        .deleteFrom('sessions')
        .where('id', '=', param('id'))
        .where('user_id', '=', param('userId'))
        .where('expires_at', '>', param('now')),
    ),
    endAllSessions: p(
      db
        .deleteFrom('sessions')
        .where('user_id', '=', (eb) =>
          eb
            .selectFrom('sessions as own')
            .select('own.user_id')
            .where('own.token_hash', '=', param('tokenHash'))
            .where('own.expires_at', '>', param('now')),
        ),
    ),
    endOtherSessions: p(
      db
        .deleteFrom('sessions')
        .where('user_id', '=', param('userId'))
        .where('token_hash', '!=', param('tokenHash')),
    ),
    // The account behind a live session whose login is recent enough for a sensitive change.
    provenUser: p(
      db
        .selectFrom('sessions')
        .innerJoin('users', 'users.id', 'sessions.user_id')
        .select([
          'users.id',
          'users.phone',
          'users.password_hash',
          'users.verified_at',
          'users.email',
        ])
        .where('sessions.token_hash', '=', param('tokenHash'))
        .where('sessions.expires_at', '>', param('now'))
        .where(
          (eb) => eb.fn.coalesce('sessions.authenticated_at', 'sessions.created_at'),
          '>',
          param<number>('since'),
        ),
    ),
    setPassword: p(
      db
        .updateTable('users')
        .set({ password_hash: param('passwordHash'), updated_at: param('now') })
        .where('id', '=', param('userId')),
    ),
    deletePendingUser: p(
      db.deleteFrom('users').where('phone', '=', param('phone')).where('verified_at', 'is', null),
    ),
    setPhone: p(
      db
        .updateTable('users')
        .set({ phone: param('phone'), updated_at: param('now') })
        .where('id', '=', param('userId')),
    ),
    deleteUser: p(db.deleteFrom('users').where('id', '=', param('userId'))),
    setEmail: p(
      db
        .updateTable('users')
        .set({ email: param('email'), updated_at: param('now') })
        .where('id', '=', param('userId')),
    ),
    pruneSessions: p(db.deleteFrom('sessions').where('expires_at', '<=', param('now'))),
    pruneLockouts: p(db.deleteFrom('lockouts').where('locked_until', '<=', param('now'))),
    pruneClientFailures: p(
      db.deleteFrom('client_failures').where('last_failure_at', '<', param('since')),
    ),
    pruneNumberFailures: p(
      db.deleteFrom('number_failures').where('last_failure_at', '<', param('since')),
    ),
    prunePendingUsers: p(
      db
        .deleteFrom('users')
        .where('verified_at', 'is', null)
        .where('updated_at', '<', param('before')),
    ),
  }

  const mustFindUser = (phone: string): User => {
    const row = q.findUser.get({ phone })
    if (row === undefined) throw new Error('user row missing right after its upsert')
    return toUser(row)
  }

  // One statement, autocommitted: RETURNING gives the row back unless the account was already
  // verified (the upsert's WHERE left it alone), and only then is it read separately.
  const savePendingUser = (phone: string, now: number, id: string): User => {
    const row = q.upsertPending.get({ id, phone, now })
    return row === undefined ? mustFindUser(phone) : toUser(row)
  }
  const verifyUser = (
    phone: string,
    passwordHash: string | null,
    now: number,
    id: string,
  ): User => {
    const row = q.upsertVerified.get({ id, phone, passwordHash, now })
    return row === undefined ? mustFindUser(phone) : toUser(row)
  }
  const pruneExpired = sqlite.transaction(
    (
      now: number,
      retention: { clientFailuresMs: number; numberFailuresMs: number; pendingMs: number },
    ): number =>
      q.pruneSessions.run({ now }).changes +
      q.pruneLockouts.run({ now }).changes +
      q.pruneClientFailures.run({ since: now - retention.clientFailuresMs }).changes +
      q.pruneNumberFailures.run({ since: now - retention.numberFailuresMs }).changes +
      q.prunePendingUsers.run({ before: now - retention.pendingMs }).changes,
  )

  const proven = (proof: SessionProof): User | undefined => {
    const row = q.provenUser.get({
      tokenHash: proof.tokenHash,
      now: proof.now,
      since: proof.authenticatedSince,
    })
    return row === undefined ? undefined : toUser(row)
  }
  const changePassword = sqlite.transaction(
    (proof: SessionProof, passwordHash: string): boolean => {
      const user = proven(proof)
      if (user === undefined) return false
      q.setPassword.run({ userId: user.id, passwordHash, now: proof.now })
      q.endOtherSessions.run({ userId: user.id, tokenHash: proof.tokenHash })
      q.clearNumberFailures.run({ phone: user.phone })
      return true
    },
  )
  const changePhone = sqlite.transaction((proof: SessionProof, newPhone: string): PhoneChange => {
    const user = proven(proof)
    if (user === undefined) return { changed: false, why: 'session' }
    const holder = q.findUser.get({ phone: newPhone })
    if (holder?.verified_at != null) return { changed: false, why: 'taken' }
    // A pending account proves nothing about the number; the code just proved who owns it.
    q.deletePendingUser.run({ phone: newPhone })
    q.setPhone.run({ userId: user.id, phone: newPhone, now: proof.now })
    q.endOtherSessions.run({ userId: user.id, tokenHash: proof.tokenHash })
    return { changed: true, oldPhone: user.phone }
  })
  const deleteAccount = sqlite.transaction((proof: SessionProof): User | undefined => {
    const user = proven(proof)
    if (user === undefined) return undefined
    // Sessions go with the account (foreign key, on delete cascade).
    q.deleteUser.run({ userId: user.id })
    q.clearNumberFailures.run({ phone: user.phone })
    return user
  })

  const setEmail = sqlite.transaction(
    (tokenHash: Buffer, now: number, email: string): { previous: string | null } | undefined => {
      // Any live session: every login time is after ANY_LOGIN.
      const user = proven({ tokenHash, now, authenticatedSince: ANY_LOGIN })
      if (user === undefined) return undefined
      q.setEmail.run({ userId: user.id, email, now })
      return { previous: user.email }
    },
  )

  // Tries begun and not yet ended, per client. They need not be durable: an unanswered try
  // decides nothing. Bounded by the calls in flight.
  const inFlight = new Map<string, number>()
  const endInFlight = (clientKey: string): void => {
    const n = (inFlight.get(clientKey) ?? 0) - 1
    if (n > 0) inFlight.set(clientKey, n)
    else inFlight.delete(clientKey)
  }
  const tries = (clientKey: string, since: number): number =>
    (q.countClientFailures.get({ clientKey, since })?.n ?? 0) + (inFlight.get(clientKey) ?? 0)

  const beginTry = (
    clientKey: string,
    now: number,
    { threshold, windowMs }: LockoutLimits,
  ): TryAdmission => {
    const lockedUntil = q.findLockout.get({ clientKey, now })?.locked_until
    if (lockedUntil !== undefined) return { admitted: false, lockedUntil }
    if (tries(clientKey, now - windowMs) >= threshold) {
      return { admitted: false, lockedUntil: undefined }
    }
    inFlight.set(clientKey, (inFlight.get(clientKey) ?? 0) + 1)
    return { admitted: true }
  }
  const failTry = (
    clientKey: string,
    phone: string,
    now: number,
    { threshold, windowMs }: LockoutLimits,
  ): number | undefined => {
    endInFlight(clientKey)
    const since = now - windowMs
    q.addClientFailure.run({ clientKey, phone, now, since })
    if (tries(clientKey, since) < threshold) return undefined
    const until = now + windowMs
    q.lock.run({ clientKey, until })
    q.clearClientFailures.run({ clientKey })
    return until
  }
  const succeedTry = (clientKey: string, phone: string): void => {
    endInFlight(clientKey)
    // Read first: most successes have nothing to clear, and a read needs no write transaction.
    if (q.hasClientPhoneFailure.get({ clientKey, phone }) !== undefined) {
      q.clearClientPhoneFailures.run({ clientKey, phone })
    }
  }

  return {
    findUserByPhone: (phone) =>
      settle(() => {
        const row = q.findUser.get({ phone })
        return row === undefined ? undefined : toUser(row)
      }),
    savePendingUser: (phone, now, newId) => settle(() => savePendingUser(phone, now, newId)),
    verifyUser: (phone, passwordHash, now, newId) =>
      settle(() => verifyUser(phone, passwordHash, now, newId)),

    beginTry: (clientKey, _phone, now, limits) => settle(() => beginTry(clientKey, now, limits)),
    failTry: (clientKey, phone, now, limits) =>
      settle(() => failTry(clientKey, phone, now, limits)),
    succeedTry: (clientKey, phone) =>
      settle(() => {
        succeedTry(clientKey, phone)
      }),
    releaseTry: (clientKey) =>
      settle(() => {
        endInFlight(clientKey)
      }),

    beginNumberTry: (phone, now, limit) =>
      settle(() => q.beginNumberTry.get({ phone, now, limit }) !== undefined),
    addNumberFailure: (phone, now) =>
      settle(() => {
        q.addNumberFailure.run({ phone, now })
      }),
    clearNumberFailures: (phone) =>
      settle(() => {
        q.clearNumberFailures.run({ phone })
      }),

    createSession: (session) =>
      settle(() => {
        q.createSession.run({ ...session })
      }),
    findSession: (tokenHash, now) =>
      settle(() => {
        const row = q.findSession.get({ tokenHash, now })
        return row === undefined ? undefined : toSessionRecord(row)
      }),
    listSessions: (userId, now, limit) =>
      settle(() => q.listSessions.all({ userId, now, limit }).map(toSessionRecord)),
    deleteSession: (tokenHash) =>
      settle(() => {
        q.deleteSession.run({ tokenHash })
      }),
    revokeSession: (userId, id, now) =>
      settle(() => q.revokeSession.run({ userId, id, now }).changes > 0),
    endAllSessions: (tokenHash, now) =>
      settle(() => {
        q.endAllSessions.run({ tokenHash, now })
      }),

    changePassword: (proof, passwordHash) => settle(() => changePassword(proof, passwordHash)),
    changePhone: (proof, newPhone) => settle(() => changePhone(proof, newPhone)),
    deleteAccount: (proof) => settle(() => deleteAccount(proof)),
    setEmail: (tokenHash, now, email) => settle(() => setEmail(tokenHash, now, email)),

    pruneExpired: (now, retention) => settle(() => pruneExpired(now, retention)),
  }
}

/** settle runs a synchronous step and hands its result (or error) over as a settled promise. */
function settle<T>(step: () => T): Promise<T> {
  try {
    return Promise.resolve(step())
  } catch (error) {
    return Promise.reject(error instanceof Error ? error : new Error(String(error)))
  }
}
