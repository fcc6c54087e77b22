import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { sql, type Kysely } from 'kysely'
import { describe, expect, it } from 'vitest'
import { hashSessionToken } from '../src/auth/session-token.js'
import { openDatabase, type Database } from '../src/store/database.js'
import { migrate } from '../src/store/migrations.js'
import { openPostgres } from '../src/store/postgres.js'
import { PHONES, startTestServer, STORE, storeConfig } from './harness.js'

const TOKEN = 'T'.repeat(43)
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/**
 * An earlier release's database: the schema at `target`, with a verified account and a live
 * session written the way that release wrote them.
 */
async function databaseAt(target: string): Promise<{ dir: string; databaseUrl?: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'otpauth-upgrade-'))
  const fromStore = await storeConfig()
  const seed = async (db: Kysely<Database>): Promise<void> => {
    await migrate(db, target)
    await sql`insert into users (id, phone, password_hash, verified_at, created_at, updated_at)
      values ('0b0e8ea6-5c4e-4a55-9d2f-6f0f7d1e2a33', ${PHONES.alice}, null, 1, 1, 1)`.execute(db)
    await sql`insert into sessions (token_hash, user_id, created_at, expires_at)
      values (${hashSessionToken(TOKEN)}, '0b0e8ea6-5c4e-4a55-9d2f-6f0f7d1e2a33',
              ${Date.UTC(2026, 0, 1) - 60_000}, ${Date.UTC(2026, 0, 2)})`.execute(db)
  }
  if (fromStore.databaseUrl === undefined) {
    const database = openDatabase(join(dir, 'otpauth.db'), 'normal')
    try {
      await seed(database.db)
    } finally {
      await database.close()
    }
    return { dir }
  }
  const pg = openPostgres({
    url: fromStore.databaseUrl,
    poolMax: 1,
    connectTimeoutMs: 5_000,
    statementTimeoutMs: 5_000,
    applicationName: 'otpauth-upgrade-test',
    onIdleError: () => undefined,
  })
  try {
    await seed(pg.db)
  } finally {
    await pg.close()
  }
  return { dir, databaseUrl: fromStore.databaseUrl }
}

describe(`Upgrading a database of the previous release (${STORE})`, () => {
  it('when a database from before the account lifecycle is opened, then its live sessions validate with a new session id, list and can be revoked', async () => {
    const before = await databaseAt('0002_shared_replica_state')

    const t = await startTestServer({
      dir: before.dir,
      ...(before.databaseUrl === undefined ? {} : { databaseUrl: before.databaseUrl }),
    })
    const validated = await t.client.validateSession({ sessionToken: TOKEN })
    const listed = await t.client.listSessions({ sessionToken: TOKEN })

    expect(validated.phoneNumber).toBe(PHONES.alice)
    expect(validated.sessionId).toMatch(UUID)
    // Sessions of the old release were authenticated when they were created.
    expect(validated.authenticatedAt).toEqual(new Date(Date.UTC(2026, 0, 1) - 60_000))
    expect(listed.sessions).toEqual([
      expect.objectContaining({ sessionId: validated.sessionId, clientAddress: '', current: true }),
    ])
    await t.client.revokeSession({ sessionToken: TOKEN, sessionId: validated.sessionId })
    const err = await t.client.validateSession({ sessionToken: TOKEN }).catch((e: unknown) => e)
    expect(err).toMatchObject({ reason: 'SESSION_INVALID' })
  })
})
