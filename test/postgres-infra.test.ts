/**
 * Self-check of the PostgreSQL test infrastructure (test/postgres/): databases of their own on the
 * run's server, and stop/start of a server for fault tests.
 */
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  createTestDatabase,
  postgresServerUrl,
  startPostgres,
  startPrivatePostgres,
  stopPostgres,
  terminateConnections,
  type PrivatePostgres,
} from './postgres/test-database.js'

async function connect(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 })
  client.on('error', () => undefined)
  await client.connect()
  return client
}

async function selectOne(url: string): Promise<number> {
  const client = await connect(url)
  try {
    const result = await client.query<{ one: number }>('select 1 as one')
    return result.rows[0]?.one ?? -1
  } finally {
    await client.end()
  }
}

async function databaseExists(name: string): Promise<boolean> {
  const client = await connect(postgresServerUrl())
  try {
    const result = await client.query('select 1 from pg_database where datname = $1', [name])
    return result.rowCount === 1
  } finally {
    await client.end()
  }
}

describe('PostgreSQL test infrastructure', () => {
  it('creates a database of its own that accepts queries, and drops it', async () => {
    const db = await createTestDatabase()
    const name = new URL(db.url).pathname.slice(1)
    expect(name).toMatch(/^otpauth_t_[0-9a-f]+$/)
    expect(await selectOne(db.url)).toBe(1)

    // terminateConnections ends the other sessions on that database, not its own.
    const idle = await connect(db.url)
    expect(await terminateConnections(db.url)).toBe(1)
    await expect(idle.query('select 1')).rejects.toThrow()
    await idle.end().catch(() => undefined)

    const open = await connect(db.url) // DROP ... WITH (FORCE) closes it
    await db.drop()
    await open.end().catch(() => undefined)
    expect(await databaseExists(name)).toBe(false)
  })

  // On a private server: stopping the run's shared server would cut off the other test files.
  describe('stopPostgres / startPostgres', () => {
    let server: PrivatePostgres

    beforeAll(async () => {
      server = await startPrivatePostgres()
    })
    afterAll(async () => {
      await server.destroy()
    })

    it('refuses connections while stopped, accepts them again after start', async () => {
      const db = await createTestDatabase(server.url)
      expect(await selectOne(db.url)).toBe(1)

      await stopPostgres(server)
      await expect(selectOne(db.url)).rejects.toThrow(/ECONNREFUSED/)

      await startPostgres(server)
      expect(await selectOne(db.url)).toBe(1)
      await db.drop()
    })
  })
})
