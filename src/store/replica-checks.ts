import { sql, type Kysely } from 'kysely'
import type { Database } from './database.js'

export interface ReplicaIdentity {
  /** Fingerprints (never the keys) of the current code key and of the previous one, if any. */
  keyFingerprint: string
  previousKeyFingerprint: string | undefined
  /** This replica's clock, epoch ms. */
  now: () => number
  /** Largest accepted distance between this replica's clock and the database's; 0: no check. */
  maxClockSkewMs: number
}

// One row per code key fingerprint a replica holds: name "code_key:<fingerprint>", value the
// last time (epoch ms) a live replica said it holds that key.
const KEY_PREFIX = 'code_key:'
// Replicas renew their keys every prune round (a minute); a key nobody renewed for this long is
// no longer in use.
const KEY_IN_USE_MS = 10 * 60_000
const KEY_CHECK_LOCK = 7_135_513_443

/**
 * checkReplica refuses to start a replica that would break the rules shared with the others:
 * a code key none of them holds (codes issued elsewhere would never verify here, and the reverse),
 * or a clock too far from the database's (expiry, cooldowns and lockout windows are decided by
 * each replica's clock). Throws an Error that says what to fix. On success the replica's keys
 * are recorded as in use.
 */
export async function checkReplica(db: Kysely<Database>, me: ReplicaIdentity): Promise<void> {
  if (me.maxClockSkewMs > 0) {
    const before = me.now()
    const { rows } = await sql<{ ms: number }>`
      select (extract(epoch from clock_timestamp()) * 1000)::bigint as ms`.execute(db)
    const after = me.now()
    const skew = Math.abs((rows[0]?.ms ?? 0) - (before + after) / 2)
    // The round trip blurs the reading by up to half its length.
    if (skew - (after - before) / 2 > me.maxClockSkewMs) {
      throw new Error(
        `this replica's clock is ${Math.round(skew)} ms away from the database's ` +
          `(OTPAUTH_MAX_CLOCK_SKEW_MS is ${me.maxClockSkewMs}): replicas decide code expiry, ` +
          'cooldowns and lockouts by their own clocks, so keep them in sync (NTP)',
      )
    }
  }

  // The key check and the record of this replica's keys are one step, so two replicas starting
  // at once with different keys cannot both pass an empty record.
  await db.transaction().execute(async (trx) => {
    await sql`select pg_advisory_xact_lock(${KEY_CHECK_LOCK})`.execute(trx)
    const rows = await trx
      .selectFrom('replica_settings')
      .select(['name', 'value'])
      .where('name', 'like', `${KEY_PREFIX}%`)
      .execute()
    const now = me.now()
    const inUse = rows
      .filter((r) => Number(r.value) > now - KEY_IN_USE_MS)
      .map((r) => r.name.slice(KEY_PREFIX.length))
    const mine = [me.keyFingerprint, me.previousKeyFingerprint].filter((f) => f !== undefined)
    if (inUse.length > 0 && !mine.some((f) => inUse.includes(f))) {
      throw new Error(
        `OTPAUTH_CODE_HMAC_KEY differs from the keys the other replicas use (fingerprint ` +
          `${me.keyFingerprint}, theirs ${inUse.join(', ')}): codes sent by one would never ` +
          'verify on the other. Give every replica the same key; to rotate, set the old one as ' +
          'OTPAUTH_CODE_HMAC_PREVIOUS_KEY',
      )
    }
    await recordKeys(trx, me)
  })
}

/** renewKeys records again that this replica holds its keys (called every prune round). */
export async function renewKeys(db: Kysely<Database>, me: ReplicaIdentity): Promise<void> {
  await recordKeys(db, me)
}

async function recordKeys(db: Kysely<Database>, me: ReplicaIdentity): Promise<void> {
  const now = String(me.now())
  const mine = [me.keyFingerprint, me.previousKeyFingerprint].filter((f) => f !== undefined)
  await db
    .insertInto('replica_settings')
    .values(mine.map((f) => ({ name: `${KEY_PREFIX}${f}`, value: now })))
    .onConflict((oc) =>
      oc.column('name').doUpdateSet((eb) => ({ value: eb.ref('excluded.value') })),
    )
    .execute()
}
