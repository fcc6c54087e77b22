import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import SQLite from 'better-sqlite3'
import { Kysely, SqliteDialect } from 'kysely'

/** Rows are snake_case; times are epoch milliseconds (SQLite has no timestamp type). */
export interface UsersTable {
  id: string
  /** E.164, unique. */
  phone: string
  password_hash: string | null
  verified_at: number | null
  created_at: number
  updated_at: number
}

export interface SessionsTable {
  /** SHA-256 of the token; the token itself is never stored. */
  token_hash: Buffer
  user_id: string
  created_at: number
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

export interface Database {
  users: UsersTable
  sessions: SessionsTable
  client_failures: ClientFailuresTable
  lockouts: LockoutsTable
  number_failures: NumberFailuresTable
}

/** normal survives a process crash; full also survives power loss, at the cost of an fsync per commit. */
export type SynchronousMode = 'normal' | 'full'

export interface OpenDatabase {
  sqlite: SQLite.Database
  db: Kysely<Database>
  close(): Promise<void>
}

/**
 * openDatabase opens (creating if needed) the SQLite file in WAL mode with foreign keys on.
 * Throws with the path and SQLite's reason when the file cannot be opened or written.
 */
export function openDatabase(path: string, synchronous: SynchronousMode): OpenDatabase {
  let sqlite: SQLite.Database
  try {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true })
    sqlite = new SQLite(path, { timeout: 5_000 })
    sqlite.pragma('journal_mode = WAL')
    sqlite.pragma(`synchronous = ${synchronous === 'full' ? 'FULL' : 'NORMAL'}`)
    sqlite.pragma('foreign_keys = ON')
    // Fails now, not on the first request, when the file is read-only or locked by another process.
    sqlite.exec('BEGIN IMMEDIATE; ROLLBACK')
  } catch (cause) {
    const reason = cause instanceof Error ? cause.message : String(cause)
    throw new Error(`cannot open database "${path}": ${reason}`, { cause })
  }
  const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: sqlite }) })
  return {
    sqlite,
    db,
    close: async () => {
      await db.destroy() // closes the better-sqlite3 handle too
    },
  }
}
