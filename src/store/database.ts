import { mkdirSync, realpathSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import SQLite from 'better-sqlite3'
import { Kysely, SqliteDialect, type Generated } from 'kysely'

/** Rows are snake_case; times are epoch milliseconds (SQLite has no timestamp type). */
export interface UsersTable {
  id: string
  /** E.164, unique. */
  phone: string
  password_hash: string | null
  verified_at: number | null
  created_at: number
  updated_at: number
  /** The verified email address (migration 0006); not unique: one mailbox may serve accounts. */
  email: Generated<string | null>
}

export interface SessionsTable {
  /** SHA-256 of the token; the token itself is never stored. */
  token_hash: Buffer
  /** Public id (UUID), unique. Filled by the database for rows written before 0003. */
  id: string
  user_id: string
  created_at: number
  /** When the login behind the session happened; null on rows from before 0003 (= created_at). */
  authenticated_at: number | null
  /** The client key of the Login; '' on rows from before 0003. */
  client_key: string
  expires_at: number
}

export interface ClientFailuresTable {
  client_key: string
  phone: string
  failures: number
  last_failure_at: number
}

export interface LockoutsTable {
  client_key: string
  locked_until: number
}

export interface NumberFailuresTable {
  phone: string
  failures: number
  last_failure_at: number
}

/** PostgreSQL only: a live challenge (the embedded store keeps them in process memory). */
export interface CodesTable {
  /**
   * The challenge's subject (CodeStore): the phone number, or the account id for a phone change.
   * Named before phone changes existed; not renamed, so replicas of the previous release keep
   * working during a rolling update.
   */
  phone: string
  purpose: string
  /** HMAC-SHA-256 of the code under the key current when it was issued. */
  code_hmac: Buffer
  expires_at: number
  tries: number
  max_tries: number
  consumed: boolean
  password_hash: string | null
  requested_by: string
  /** What the code proves when the answer does not name it (AddEmail's address); 0006. */
  target: Generated<string | null>
}

/** PostgreSQL only: send times to a number within the last hour, oldest first. */
export interface NumberSendsTable {
  phone: string
  sends: number[]
  /** A code sent to the number was answered at this time: sends up to it impose no cooldown. */
  cooldown_ended_at: Generated<number>
  /** Sends to the number fail for now (transient): every path answers alike until then. */
  failing_until: Generated<number>
  /** The number cannot receive SMS (permanent): every path answers alike until then. */
  undeliverable_until: Generated<number>
}

/** PostgreSQL only: a client's send bucket (tokens refill continuously up to the hourly limit). */
export interface ClientSendsTable {
  client_key: string
  tokens: number
  updated_at: number
}

/** PostgreSQL only: facts replicas agree on, such as the code key's fingerprint. */
export interface ReplicaSettingsTable {
  name: string
  value: string
}

export interface Database {
  users: UsersTable
  sessions: SessionsTable
  client_failures: ClientFailuresTable
  lockouts: LockoutsTable
  number_failures: NumberFailuresTable
  codes: CodesTable
  number_sends: NumberSendsTable
  client_sends: ClientSendsTable
  replica_settings: ReplicaSettingsTable
}

/** normal survives a process crash; full also survives power loss, at the cost of an fsync per commit. */
export type SynchronousMode = 'normal' | 'full'

export interface OpenDatabase {
  sqlite: SQLite.Database
  db: Kysely<Database>
  close(): Promise<void>
}

/**
 * openDatabase opens (creating if needed) the SQLite file in WAL mode with foreign keys on, and
 * holds the file's process lock so no second process can serve it.
 * Throws with the path and SQLite's reason when the file cannot be opened or written.
 */
export function openDatabase(path: string, synchronous: SynchronousMode): OpenDatabase {
  let sqlite: SQLite.Database
  let processLock: SQLite.Database | undefined
  try {
    if (path !== ':memory:') {
      mkdirSync(dirname(path), { recursive: true })
      processLock = holdProcessLock(path)
    }
    sqlite = new SQLite(path, { timeout: 5_000 })
    sqlite.pragma('journal_mode = WAL')
    sqlite.pragma(`synchronous = ${synchronous === 'full' ? 'FULL' : 'NORMAL'}`)
    sqlite.pragma('foreign_keys = ON')
    // Fails now, not on the first request, when the file is read-only or locked by another process.
    sqlite.exec('BEGIN IMMEDIATE; ROLLBACK')
  } catch (cause) {
    processLock?.close()
    if (cause instanceof SharedDatabaseError) throw cause
    const reason = cause instanceof Error ? cause.message : String(cause)
    throw new Error(`cannot open database "${path}": ${reason}`, { cause })
  }
  const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: sqlite }) })
  return {
    sqlite,
    db,
    close: async () => {
      await db.destroy() // closes the better-sqlite3 handle too
      processLock?.close()
    },
  }
}

/** SharedDatabaseError: another process serves this SQLite file. */
export class SharedDatabaseError extends Error {}

/**
 * holdProcessLock takes an exclusive lock on "<file>.lock" (a one-page SQLite file held in an
 * open write transaction) for as long as the process runs. The embedded store keeps codes and
 * limits in process memory, so a second process on the same file would double every limit; the
 * OS drops the lock when the process dies, even by SIGKILL. Readers of the database itself (a
 * backup, sqlite3) are not blocked.
 */
function holdProcessLock(path: string): SQLite.Database {
  // The real path: two processes reaching one file through different links share one lock.
  let real = join(realpathSync(dirname(path)), basename(path))
  try {
    real = realpathSync(real)
  } catch {
    // not created yet: its folder's real path is enough
  }
  const lock = new SQLite(`${real}.lock`, { timeout: 0 })
  try {
    lock.pragma('locking_mode = EXCLUSIVE')
    lock.exec('BEGIN EXCLUSIVE')
  } catch (cause) {
    lock.close()
    throw new SharedDatabaseError(
      `database "${path}" is in use by another OtpAuth process: the embedded SQLite store serves ` +
        'one process only; to run more than one, set OTPAUTH_DATABASE to a postgres:// URL',
      { cause },
    )
  }
  return lock
}
