/**
 * PostgreSQL helpers for tests (run inside vitest workers): the server comes from
 * ./global-setup.ts through `inject`.
 *
 * Every test (or test file) gets a database of its own with createTestDatabase(), so tests run in
 * parallel against one server without seeing each other's rows.
 */
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { inject } from 'vitest'
import {
  createCluster,
  serverUrl,
  startCluster,
  stopCluster,
  type PostgresControl,
} from './cluster.js'

/** The URL of the server the run uses (the `postgres` database on it). */
export function postgresServerUrl(): string {
  return inject('postgresUrl')
}

async function withClient<T>(url: string, use: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 })
  // A server that goes away under an idle client emits 'error'; the query's rejection is enough.
  client.on('error', () => undefined)
  await client.connect()
  try {
    return await use(client)
  } finally {
    await client.end().catch(() => undefined)
  }
}

export interface TestDatabase {
  /** The new database's URL: same host, port and user as the server's, its own name. */
  readonly url: string
  /** Drops the database, closing any connection still open to it (DROP ... WITH (FORCE)). */
  drop(): Promise<void>
}

/** CREATE DATABASE "otpauth_t_<random hex>" on the run's server (or on `server` when given). */
export async function createTestDatabase(
  server: string = postgresServerUrl(),
): Promise<TestDatabase> {
  const name = `otpauth_t_${randomBytes(8).toString('hex')}`
  await withClient(server, (client) => client.query(`CREATE DATABASE "${name}"`))
  const url = new URL(server)
  url.pathname = `/${name}`
  let dropped = false
  return {
    url: url.toString(),
    drop: async () => {
      if (dropped) return
      await withClient(server, (client) =>
        client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`),
      )
      dropped = true
    },
  }
}

/**
 * Ends every other connection to the database of `dbUrl` (pg_terminate_backend), as a server
 * restart or a network cut would; returns how many were ended.
 */
export async function terminateConnections(dbUrl: string): Promise<number> {
  const database = decodeURIComponent(new URL(dbUrl).pathname.replace(/^\//, ''))
  const result = await withClient(dbUrl, (client) =>
    client.query<{ terminated: boolean }>(
      'select pg_terminate_backend(pid) as terminated from pg_stat_activity ' +
        'where datname = $1 and pid <> pg_backend_pid()',
      [database],
    ),
  )
  return result.rows.filter((row) => row.terminated).length
}

/** A PostgreSQL server a test can stop and start: the run's shared one, or a private one. */
export interface PostgresServer {
  readonly url: string
  readonly control: PostgresControl
}

function sharedServer(): PostgresServer {
  const control = inject('postgresControl')
  if (control === undefined) {
    throw new Error(
      'stopPostgres/startPostgres: the PostgreSQL server was not started by this test run ' +
        '(OTPAUTH_TEST_DATABASE_URL points at an external server), so tests cannot stop it; ' +
        'use startPrivatePostgres() for a server of your own',
    )
  }
  return { url: postgresServerUrl(), control: JSON.parse(control) as PostgresControl }
}

/**
 * Stops the server (pg_ctl stop -m fast: sessions are ended, clients see their connections
 * drop). Without an argument this is the run's SHARED server: every test file running at the same
 * time loses its database too. Prefer a private server for fault tests (startPrivatePostgres).
 */
export async function stopPostgres(server: PostgresServer = sharedServer()): Promise<void> {
  await stopCluster(server.control, 'fast')
}

/** Starts the server again (pg_ctl start -w, same port and options); resolves once it is ready. */
export async function startPostgres(server: PostgresServer = sharedServer()): Promise<void> {
  await startCluster(server.control)
}

export interface PrivatePostgres extends PostgresServer {
  /** Stops the server and deletes its files. Idempotent. */
  destroy(): Promise<void>
}

/**
 * A cluster of this test's own (initdb + start, ~0.5-2 s), for tests that stop, start or break the
 * server without disturbing the other test files. Pass it to stopPostgres/startPostgres and
 * createTestDatabase(server.url); destroy() it in afterAll. Needs the server binaries even when
 * OTPAUTH_TEST_DATABASE_URL is set.
 */
export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const cluster = await createCluster()
  process.once('exit', cluster.destroySync)
  return {
    url: serverUrl(cluster.control),
    control: cluster.control,
    destroy: async () => {
      process.removeListener('exit', cluster.destroySync)
      await cluster.destroy()
    },
  }
}
