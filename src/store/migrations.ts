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
  '0007_round_trip_functions': {
    async up(db: AnyDb) {
      if (!isPostgres(db)) return
      for (const statement of ROUND_TRIP_FUNCTIONS) await statement.execute(db)
    },
  },
}

// Any constant, as long as it is the same for every replica: pg_advisory_lock's key.
// Steps that took a transaction of several statements (a round trip each) become one function
// call, one round trip. Each function body is the transaction it replaces: in READ COMMITTED
// every statement in a PL/pgSQL function reads a fresh snapshot, so a count read after a row
// lock sees every try committed before it, exactly as in the transaction. Additions only: the
// previous release, which does not call them, runs beside them during a rolling update.
const ROUND_TRIP_FUNCTIONS = [
  // A try on a code: lock the client's row (every replica's tries for that client queue here),
  // refuse while locked out (returns the lock's end) or at the threshold of counted tries
  // (returns 0), else count this try as a failure until it succeeds (returns -1).
  sql`create or replace function otpauth_begin_try(
    p_client_key text, p_phone text, p_now bigint, p_since bigint, p_threshold integer
  ) returns bigint language plpgsql as $$
  declare
    v_locked_until bigint;
    v_tries bigint;
  begin
    insert into lockouts (client_key, locked_until) values (p_client_key, 0)
      on conflict (client_key) do update set locked_until = lockouts.locked_until
      returning locked_until into v_locked_until;
    if v_locked_until > p_now then return v_locked_until; end if;
    select coalesce(sum(failures), 0) into v_tries from client_failures
      where client_key = p_client_key and last_failure_at >= p_since;
    if v_tries >= p_threshold then return 0; end if;
    insert into client_failures (client_key, phone, failures, last_failure_at)
      values (p_client_key, p_phone, 1, p_now)
      on conflict (client_key, phone) do update set
        failures = case when client_failures.last_failure_at >= p_since
          then client_failures.failures + 1 else 1 end,
        last_failure_at = excluded.last_failure_at;
    return -1;
  end $$`,
  // A failed try: under the client's row lock, lock the client out until p_until (returned) once
  // its counted failures reach the threshold, and start its count again; else return null.
  sql`create or replace function otpauth_fail_try(
    p_client_key text, p_since bigint, p_threshold integer, p_until bigint
  ) returns bigint language plpgsql as $$
  declare
    v_tries bigint;
  begin
    insert into lockouts (client_key, locked_until) values (p_client_key, 0)
      on conflict (client_key) do update set locked_until = lockouts.locked_until;
    select coalesce(sum(failures), 0) into v_tries from client_failures
      where client_key = p_client_key and last_failure_at >= p_since;
    if v_tries < p_threshold then return null; end if;
    update lockouts set locked_until = p_until where client_key = p_client_key;
    delete from client_failures where client_key = p_client_key;
    return p_until;
  end $$`,
  // One SMS charged to every budget (prefix, country, global: always in that order, so charges
  // never deadlock) or to none: each upsert locks its row and counts only below its limit; if
  // one refuses, the others are taken back while their rows are still locked, so no other
  // charge ever sees the increment. Returns the 1-based positions that refused (empty: charged).
  sql`create or replace function otpauth_charge_sms_budgets(
    p_scopes text[], p_windows bigint[], p_limits integer[]
  ) returns integer[] language plpgsql as $$
  declare
    v_refused integer[] := '{}';
    v_count integer;
  begin
    for i in 1 .. cardinality(p_scopes) loop
      insert into sms_budgets (scope, window_start, count) values (p_scopes[i], p_windows[i], 1)
        on conflict (scope, window_start) do update set count = sms_budgets.count + 1
        where sms_budgets.count < p_limits[i]
        returning count into v_count;
      if not found then v_refused := v_refused || i; end if;
    end loop;
    if cardinality(v_refused) > 0 then
      for i in 1 .. cardinality(p_scopes) loop
        if not (i = any (v_refused)) then
          update sms_budgets set count = count - 1
            where scope = p_scopes[i] and window_start = p_windows[i];
        end if;
      end loop;
    end if;
    return v_refused;
  end $$`,
  // A send reserved against the number's rules (cooldown, hourly cap: the send is appended only
  // if both hold), then the client's token bucket, then (for an SMS: budget arrays not empty)
  // one SMS from every budget; whatever refuses takes back what came before it in the same
  // statement, while its rows are still locked, so no other send sees it. Returns 'number',
  // 'client' or 'budget' (with the refusing budgets' positions) for the step that refused, else
  // null with the number's delivery marks.
  sql`create or replace function otpauth_reserve_send(
    p_phone text, p_client_key text, p_now bigint, p_cooldown_ms bigint,
    p_per_number integer, p_per_client double precision, p_rate_per_ms double precision,
    p_scopes text[], p_windows bigint[], p_limits integer[],
    out refused text, out refused_budgets integer[],
    out failing_until bigint, out undeliverable_until bigint
  ) language plpgsql as $$
  declare
    v_tokens double precision;
  begin
    insert into number_sends as n (phone, sends) values (p_phone, array[p_now])
      on conflict (phone) do update set
        sends = array(select t from unnest(n.sends) t where t > p_now - 3600000 order by t)
          || p_now,
        -- The marker exempted the last send; this send is the last now, with its own cooldown.
        cooldown_ended_at = 0
      where coalesce((select max(t) from unnest(n.sends) t), 0)
          <= greatest(p_now - p_cooldown_ms, n.cooldown_ended_at)
        and cardinality(array(select t from unnest(n.sends) t where t > p_now - 3600000))
          < p_per_number
      returning n.failing_until, n.undeliverable_until
      into failing_until, undeliverable_until;
    if not found then refused := 'number'; return; end if;
    insert into client_sends as c (client_key, tokens, updated_at)
      values (p_client_key, p_per_client - 1, p_now)
      on conflict (client_key) do update set
        tokens = least(p_per_client, c.tokens + greatest(0, p_now - c.updated_at) * p_rate_per_ms) - 1,
        updated_at = greatest(c.updated_at, p_now)
      where least(p_per_client, c.tokens + greatest(0, p_now - c.updated_at) * p_rate_per_ms) >= 1
      returning c.tokens into v_tokens;
    if not found then
      update number_sends set sends = array_remove(sends, p_now) where phone = p_phone;
      refused := 'client';
      return;
    end if;
    if cardinality(p_scopes) > 0 then
      refused_budgets := otpauth_charge_sms_budgets(p_scopes, p_windows, p_limits);
      if cardinality(refused_budgets) > 0 then
        update number_sends set sends = array_remove(sends, p_now) where phone = p_phone;
        update client_sends set tokens = least(p_per_client, tokens + 1)
          where client_key = p_client_key;
        refused := 'budget';
      end if;
    end if;
  end $$`,
]

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
