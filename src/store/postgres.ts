import { Kysely, PostgresDialect } from 'kysely'
import pg from 'pg'
import type { Database } from './database.js'

export interface PostgresOptions {
  /** postgres:// URL; its password is never logged (see redactUrl). */
  url: string
  poolMax: number
  connectTimeoutMs: number
  statementTimeoutMs: number
  /** Names this replica's connections in pg_stat_activity. */
  applicationName: string
  /** Called when an idle pooled connection fails (the server restarted or dropped it). */
  onIdleError: (error: Error) => void
}

export interface OpenPostgres {
  db: Kysely<Database>
  pool: pg.Pool
  close(): Promise<void>
}

const INT8 = 20
const INT8_ARRAY = 1016

// Epoch-ms times are bigint columns; as JS numbers they are exact up to 2^53 (year 287396).
const types = {
  getTypeParser(oid: number, format?: 'text' | 'binary'): (value: string) => unknown {
    if (oid === INT8) return (value: string) => Number(value)
    if (oid === INT8_ARRAY) {
      const parseArray = pg.types.getTypeParser(INT8_ARRAY as never, 'text') as (
        v: string,
      ) => string[]
      return (value: string) => parseArray(value).map(Number)
    }
    // eslint-disable-next-line @typescript-eslint/no-unsafe-enum-assignment -- any OID the server sends
    return pg.types.getTypeParser(oid, format ?? 'text') as (value: string) => unknown
  },
}

/** openPostgres makes the pool and the Kysely instance; it connects lazily (migrate is the first call). */
export function openPostgres(options: PostgresOptions): OpenPostgres {
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.poolMax,
    connectionTimeoutMillis: options.connectTimeoutMs,
    idleTimeoutMillis: 30_000,
    // Recycled now and then, so connections follow a failover or a DNS change.
    maxLifetimeSeconds: 1_800,
    statement_timeout: options.statementTimeoutMs,
    lock_timeout: options.statementTimeoutMs,
    idle_in_transaction_session_timeout: options.statementTimeoutMs * 2,
    // The client gives up a little after the server would have, if the server is unreachable.
    query_timeout: options.statementTimeoutMs + 1_000,
    application_name: options.applicationName,
    // Every atomicity argument in the stores (row lock, then a fresh read) assumes READ
    // COMMITTED, PostgreSQL's default; pinned in case the server's default is stricter.
    options: '-c default_transaction_isolation=read\\ committed',
    keepAlive: true,
    types,
  })
  // Without a listener an idle client's error (server restart, dropped connection) is thrown
  // from the pool's EventEmitter and kills the process.
  pool.on('error', options.onIdleError)
  // The pool listens only to idle clients: a checked-out one that loses its server (restart,
  // pg_terminate_backend) would throw its 'error' event and kill the process. Its query rejects
  // on its own; the pool drops the broken client when it is released.
  pool.on('connect', (client) => {
    client.on('error', options.onIdleError)
  })
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) })
  return {
    db,
    pool,
    close: async () => {
      await db.destroy() // ends the pool too
    },
  }
}
