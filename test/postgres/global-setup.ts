/**
 * vitest globalSetup: one PostgreSQL server for the whole run, handed to the test workers with
 * `provide` (read it with the helpers in ./test-database.ts).
 *
 * - OTPAUTH_TEST_DATABASE_URL set: that server is used as is (it must accept connections; the
 *   role needs CREATEDB, as every test gets a database of its own).
 * - Otherwise: a throwaway cluster from the system's server binaries (initdb + pg_ctl, run as the
 *   `postgres` user when we are root), stopped and deleted at the end of the run. Missing binaries
 *   fail the run with a message saying what to install: PostgreSQL tests never skip silently.
 */
import pg from 'pg'
import type { TestProject } from 'vitest/node'
import { createCluster, type PostgresControl } from './cluster.js'

declare module 'vitest' {
  export interface ProvidedContext {
    /** The store the harness runs the service on (one vitest project per store). */
    store: 'sqlite' | 'postgres'
    /** The server: postgres://user@host:port/db. Tests create their own databases on it. */
    postgresUrl: string
    /** JSON of a PostgresControl, only when this run started the server itself. */
    postgresControl?: string
  }
}

/** The URL without its password, for messages. */
function redact(url: string): string {
  try {
    const parsed = new URL(url)
    if (parsed.password !== '') parsed.password = '***'
    return parsed.toString()
  } catch {
    return '(unparsable URL)'
  }
}

async function checkConnects(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 })
  client.on('error', () => undefined)
  try {
    await client.connect()
    await client.query('select 1')
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    throw new Error(
      `OTPAUTH_TEST_DATABASE_URL is set, but PostgreSQL at ${redact(url)} does not accept ` +
        `connections: ${message}`,
      { cause: error },
    )
  } finally {
    await client.end().catch(() => undefined)
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const external = process.env['OTPAUTH_TEST_DATABASE_URL']
  if (external !== undefined && external !== '') {
    await checkConnects(external)
    project.provide('postgresUrl', external)
    return () => Promise.resolve()
  }

  const cluster = await createCluster()
  // Should vitest exit without running the teardown, the cluster still goes away.
  process.once('exit', cluster.destroySync)
  const control: PostgresControl = cluster.control
  project.provide('postgresUrl', cluster.url)
  project.provide('postgresControl', JSON.stringify(control))
  return async () => {
    process.removeListener('exit', cluster.destroySync)
    await cluster.destroy()
  }
}
