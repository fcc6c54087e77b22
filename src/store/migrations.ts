import { Migrator, PostgresAdapter, sql, type Kysely, type Migration } from 'kysely'

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations build the schema the types describe
type AnyDb = Kysely<any>

/** One migration set serves both dialects; where their types differ the migration branches. */
function isPostgres(db: AnyDb): boolean {
  return db.getExecutor().adapter instanceof PostgresAdapter
}

/** Applied in name order at start-up; never edit one that has shipped, add the next. */
const migrations: Record<string, Migration> = {
  '0001_initial': {
    async up(db: AnyDb) {
      const pg = isPostgres(db)
      // Times are epoch ms: SQLite's integer is 64-bit, PostgreSQL's is not.
      const time = pg ? 'bigint' : 'integer'
      const bytes = pg ? 'bytea' : 'blob'
      // SQLite: tables keyed by their primary key alone are smaller and faster without a rowid.
      const keyed = pg ? sql`` : sql`without rowid`
      await db.schema
        .createTable('users')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('phone', 'text', (c) => c.notNull().unique())
        .addColumn('password_hash', 'text')
        .addColumn('verified_at', time)
        .addColumn('created_at', time, (c) => c.notNull())
        .addColumn('updated_at', time, (c) => c.notNull())
        .execute()
      await db.schema
        .createTable('sessions')
        .addColumn('token_hash', bytes, (c) => c.primaryKey())
        .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
        .addColumn('created_at', time, (c) => c.notNull())
        .addColumn('expires_at', time, (c) => c.notNull())
        .modifyEnd(keyed)
        .execute()
      await db.schema.createIndex('sessions_user_id').on('sessions').column('user_id').execute()
      await db.schema
        .createIndex('sessions_expires_at')
        .on('sessions')
        .column('expires_at')
        .execute()
      await db.schema
        .createTable('client_failures')
        .addColumn('client_key', 'text', (c) => c.notNull())
        .addColumn('phone', 'text', (c) => c.notNull())
        .addColumn('failures', 'integer', (c) => c.notNull())
        .addColumn('last_failure_at', time, (c) => c.notNull())
        .addPrimaryKeyConstraint('client_failures_pk', ['client_key', 'phone'])
        .modifyEnd(keyed)
        .execute()
      await db.schema
        .createTable('lockouts')
        .addColumn('client_key', 'text', (c) => c.primaryKey())
        .addColumn('locked_until', time, (c) => c.notNull())
        .modifyEnd(keyed)
        .execute()
      await db.schema
        .createTable('number_failures')
        .addColumn('phone', 'text', (c) => c.primaryKey())
        .addColumn('failures', 'integer', (c) => c.notNull())
        .addColumn('last_failure_at', time, (c) => c.notNull())
        .modifyEnd(keyed)
        .execute()
    },
  },
  // State the embedded store keeps in process memory lives here when replicas share PostgreSQL.
  '0002_shared_replica_state': {
    async up(db: AnyDb) {
      if (!isPostgres(db)) return
      await db.schema
        .createTable('codes')
        .addColumn('phone', 'text', (c) => c.notNull())
        .addColumn('purpose', 'text', (c) => c.notNull())
        .addColumn('code_hmac', 'bytea', (c) => c.notNull())
        .addColumn('expires_at', 'bigint', (c) => c.notNull())
        .addColumn('tries', 'integer', (c) => c.notNull())
        .addColumn('max_tries', 'integer', (c) => c.notNull())
        .addColumn('consumed', 'boolean', (c) => c.notNull())
        .addColumn('password_hash', 'text')
        .addColumn('requested_by', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('codes_pk', ['phone', 'purpose'])
        // Counters are updated in place: room on the page keeps those updates HOT (no index write).
        .modifyEnd(sql`with (fillfactor = 80)`)
        .execute()
      await db.schema.createIndex('codes_expires_at').on('codes').column('expires_at').execute()
      await db.schema
        .createTable('number_sends')
        .addColumn('phone', 'text', (c) => c.primaryKey())
        .addColumn('sends', sql`bigint[]`, (c) => c.notNull())
        .modifyEnd(sql`with (fillfactor = 80)`)
        .execute()
      await db.schema
        .createTable('client_sends')
        .addColumn('client_key', 'text', (c) => c.primaryKey())
        .addColumn('tokens', 'double precision', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .modifyEnd(sql`with (fillfactor = 80)`)
        .execute()
      await db.schema
        .createTable('replica_settings')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('value', 'text', (c) => c.notNull())
        .execute()
    },
  },
  // Additions only (nullable or defaulted columns), so replicas of the previous release keep
  // working on the new schema during a rolling update.
  '0003_account_lifecycle': {
    async up(db: AnyDb) {
      const pg = isPostgres(db)
      const time = pg ? 'bigint' : 'integer'
      await db.schema
        .alterTable('sessions')
        .addColumn('id', 'text', (c) =>
          pg ? c.notNull().defaultTo(sql`gen_random_uuid()::text`) : c,
        )
        .execute()
      await db.schema.alterTable('sessions').addColumn('authenticated_at', time).execute()
      await db.schema
        .alterTable('sessions')
        .addColumn('client_key', 'text', (c) => c.notNull().defaultTo(''))
        .execute()
      if (!pg) {
        // SQLite cannot default a new column to a random value: existing sessions get theirs here.
        await sql`update sessions set id = lower(hex(randomblob(4)) || '-' || hex(randomblob(2))
          || '-4' || substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1)
          || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))`.execute(db)
      }
      await db.schema.createIndex('sessions_id').unique().on('sessions').column('id').execute()
      if (pg) {
        await db.schema
          .alterTable('number_sends')
          .addColumn('cooldown_ended_at', 'bigint', (c) => c.notNull().defaultTo(0))
          .execute()
      }
    },
  },
  // SMS budgets shared by replicas (the embedded store keeps them in process memory).
  '0004_sms_budgets': {
    async up(db: AnyDb) {
      if (!isPostgres(db)) return
      await db.schema
        .createTable('sms_budgets')
        .addColumn('scope', 'text', (c) => c.notNull())
        .addColumn('window_start', 'bigint', (c) => c.notNull())
        .addColumn('count', 'integer', (c) => c.notNull())
        .addPrimaryKeyConstraint('sms_budgets_pk', ['scope', 'window_start'])
        // Counters are updated in place: room on the page keeps those updates HOT (no index write).
        .modifyEnd(sql`with (fillfactor = 80)`)
        .execute()
    },
  },
  // Per-number delivery marks (the embedded store keeps them with its send history in memory).
  '0005_delivery_marks': {
    async up(db: AnyDb) {
      if (!isPostgres(db)) return
      for (const column of ['failing_until', 'undeliverable_until']) {
        await db.schema
          .alterTable('number_sends')
          .addColumn(column, 'bigint', (c) => c.notNull().defaultTo(0))
          .execute()
      }
    },
  },
  // Email as a second channel: the account's verified address, and a challenge's pending one.
  '0006_email': {
    async up(db: AnyDb) {
      await db.schema.alterTable('users').addColumn('email', 'text').execute()
      if (isPostgres(db)) await db.schema.alterTable('codes').addColumn('target', 'text').execute()
    },
  },
}

// Any constant, as long as it is the same for every replica: pg_advisory_lock's key.
const MIGRATION_LOCK = 7_135_513_441

/**
 * migrate brings the schema to the latest version (or to `target`, which upgrade tests use to
 * build a database as an earlier release left it). Throws with the failing migration's name.
 * On PostgreSQL, replicas starting at once take turns under an advisory lock (Kysely's own lock
 * is taken only after it creates its bookkeeping tables, which then race).
 */
export async function migrate(db: AnyDb, target?: string): Promise<void> {
  const run = async (conn: AnyDb): Promise<void> => {
    const migrator = new Migrator({
      db: conn,
      provider: { getMigrations: () => Promise.resolve(migrations) },
    })
    const { error, results } = await (target === undefined
      ? migrator.migrateToLatest()
      : migrator.migrateTo(target))
    if (error !== undefined) {
      const failed = results?.find((r) => r.status === 'Error')?.migrationName ?? 'unknown'
      throw new Error(`database migration ${failed} failed`, { cause: error })
    }
  }
  if (!isPostgres(db)) {
    await run(db)
    return
  }
  await db.connection().execute(async (conn) => {
    await sql`select pg_advisory_lock(${MIGRATION_LOCK})`.execute(conn)
    try {
      await run(conn)
    } finally {
      await sql`select pg_advisory_unlock(${MIGRATION_LOCK})`.execute(conn)
    }
  })
}
