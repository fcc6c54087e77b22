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

const KEY_SETTING = 'code_key_fingerprint'

/**
 * checkReplica refuses to start a replica that would break the rules shared with the others:
 * a code key none of them uses (codes issued elsewhere would never verify here, and the reverse),
 * or a clock too far from the database's (expiry, cooldowns and lockout windows are decided by
 * each replica's clock). Throws an Error that says what to fix.
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

  await db
    .insertInto('replica_settings')
    .values({ name: KEY_SETTING, value: me.keyFingerprint })
    .onConflict((oc) => oc.column('name').doNothing())
    .execute()
  const stored = await db
    .selectFrom('replica_settings')
    .select('value')
    .where('name', '=', KEY_SETTING)
    .executeTakeFirstOrThrow()
  if (stored.value === me.keyFingerprint) return
  if (stored.value === me.previousKeyFingerprint) {
    // Rotation: this replica's previous key is the one in use; its current key takes over.
    await db
      .updateTable('replica_settings')
      .set({ value: me.keyFingerprint })
      .where('name', '=', KEY_SETTING)
      .where('value', '=', stored.value)
      .execute()
    return
  }
  throw new Error(
    `OTPAUTH_CODE_HMAC_KEY differs from the key the other replicas use (fingerprint ` +
      `${me.keyFingerprint}, theirs ${stored.value}): codes sent by one would never verify on ` +
      'the other. Give every replica the same key; to rotate, set the old one as ' +
      'OTPAUTH_CODE_HMAC_PREVIOUS_KEY',
  )
}
