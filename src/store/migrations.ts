import { Migrator, sql, type Kysely, type Migration } from 'kysely'

/** Applied in name order at start-up; never edit one that has shipped, add the next. */
const migrations: Record<string, Migration> = {
  '0001_initial': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('users')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('phone', 'text', (c) => c.notNull().unique())
        .addColumn('password_hash', 'text')
        .addColumn('verified_at', 'integer')
        .addColumn('created_at', 'integer', (c) => c.notNull())
        .addColumn('updated_at', 'integer', (c) => c.notNull())
        .execute()
      await db.schema
        .createTable('sessions')
        .addColumn('token_hash', 'blob', (c) => c.primaryKey())
        .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
        .addColumn('created_at', 'integer', (c) => c.notNull())
        .addColumn('expires_at', 'integer', (c) => c.notNull())
        .modifyEnd(sql`without rowid`)
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
        .addColumn('last_failure_at', 'integer', (c) => c.notNull())
        .addPrimaryKeyConstraint('client_failures_pk', ['client_key', 'phone'])
        .modifyEnd(sql`without rowid`)
        .execute()
      await db.schema
        .createTable('lockouts')
        .addColumn('client_key', 'text', (c) => c.primaryKey())
        .addColumn('locked_until', 'integer', (c) => c.notNull())
        .modifyEnd(sql`without rowid`)
        .execute()
      await db.schema
        .createTable('number_failures')
        .addColumn('phone', 'text', (c) => c.primaryKey())
        .addColumn('failures', 'integer', (c) => c.notNull())
        .addColumn('last_failure_at', 'integer', (c) => c.notNull())
        .modifyEnd(sql`without rowid`)
        .execute()
    },
  },
}

/** migrate brings the schema to the latest version. Throws with the failing migration's name. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations build the schema the types describe
export async function migrate(db: Kysely<any>): Promise<void> {
  const migrator = new Migrator({
    db,
    provider: { getMigrations: () => Promise.resolve(migrations) },
  })
  const { error, results } = await migrator.migrateToLatest()
  if (error !== undefined) {
    const failed = results?.find((r) => r.status === 'Error')?.migrationName ?? 'unknown'
    throw new Error(`database migration ${failed} failed`, { cause: error })
  }
}
