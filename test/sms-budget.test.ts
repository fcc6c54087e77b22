/**
 * The SMS budgets, on the store of this run: MemorySmsBudget on the sqlite run (the embedded
 * store keeps them in process memory), the PostgreSQL budget on the postgres run (a database of
 * this file's own, migrated; every budget gets a pool of its own, like a replica).
 */
import { sql } from 'kysely'
import { afterAll, beforeAll, beforeEach, describe, expect, it, onTestFinished } from 'vitest'
import { AuthError } from '../src/auth/auth-error.js'
import {
  budgetKeys,
  MemorySmsBudget,
  type SmsBudget,
  type SmsBudgetKeys,
  type SmsBudgetLimits,
} from '../src/auth/sms-budget.js'
import { migrate } from '../src/store/migrations.js'
import type { OpenPostgres } from '../src/store/postgres.js'
import { createPostgresSmsBudget } from '../src/store/postgres-sms-budget.js'
import { STORE } from './harness.js'
import {
  BERLIN,
  connect,
  DAY,
  HOUR,
  limits,
  LONDON,
  LOS_ANGELES,
  MIDNIGHT,
  MINUTE,
  NEW_YORK,
  refusal,
  SAN_FRANCISCO,
  T,
  usPrefix,
} from './sms-budget-support.js'
import { createTestDatabase, type TestDatabase } from './postgres/test-database.js'

let database: TestDatabase | undefined
let admin: OpenPostgres | undefined

/**
 * budgets makes `replicas` budgets with the given limits that share their counters: on
 * PostgreSQL each with a pool of its own (`poolMax` connections), in memory the one instance
 * (the embedded store is one process).
 */
function budgets(
  configured: SmsBudgetLimits,
  { replicas = 1, poolMax = 4 }: { replicas?: number; poolMax?: number } = {},
): { budgets: SmsBudget[]; pools: OpenPostgres[] } {
  if (STORE === 'sqlite') {
    const budget = new MemorySmsBudget({ ...configured, max: 10_000 })
    return { budgets: Array.from({ length: replicas }, () => budget), pools: [] }
  }
  if (database === undefined) throw new Error('no test database')
  const url = database.url
  const pools = Array.from({ length: replicas }, () => connect(url, poolMax))
  onTestFinished(async () => {
    await Promise.all(pools.map((p) => p.close()))
  })
  return {
    budgets: pools.map((p) => createPostgresSmsBudget(p.db, configured, () => undefined)),
    pools,
  }
}

function budget(configured: SmsBudgetLimits): SmsBudget {
  const [only] = budgets(configured).budgets
  if (only === undefined) throw new Error('no budget')
  return only
}

beforeAll(async () => {
  if (STORE !== 'postgres') return
  database = await createTestDatabase()
  admin = connect(database.url, 2)
  await migrate(admin.db)
})

beforeEach(async () => {
  if (admin !== undefined) await sql`truncate sms_budgets`.execute(admin.db)
})

afterAll(async () => {
  await admin?.close()
  await database?.drop()
})

describe(`SMS budgets (${STORE === 'sqlite' ? 'in memory' : 'PostgreSQL'})`, () => {
  it('when a prefix has had its hourly budget, then the next SMS to it is refused until the UTC hour ends, and other prefixes still get theirs', async () => {
    const b = budget(limits({ perPrefixPerHour: 3 }))
    for (let i = 0; i < 3; i += 1) await b.charge(SAN_FRANCISCO, T + i)

    const error = await refusal(b.charge(SAN_FRANCISCO, T + 1_000))

    expect(error.reason).toBe('SMS_BUDGET_EXHAUSTED')
    expect(error.retryAfterMs).toBe(45 * MINUTE - 1_000)
    await b.charge(LOS_ANGELES, T + 1_000)
  })

  it('when a country has had its daily budget, then the next SMS to it is refused until UTC midnight, and other countries still get theirs', async () => {
    const b = budget(limits({ perCountryPerDay: 3 }))
    for (const keys of [SAN_FRANCISCO, LOS_ANGELES, NEW_YORK]) await b.charge(keys, T)

    const error = await refusal(b.charge(usPrefix(1), T + HOUR))

    expect(error.reason).toBe('SMS_BUDGET_EXHAUSTED')
    expect(error.retryAfterMs).toBe(MIDNIGHT + DAY - (T + HOUR))
    await b.charge(LONDON, T + HOUR)
  })

  it('when the global daily budget is used up, then every SMS is refused until UTC midnight', async () => {
    const b = budget(limits({ globalPerDay: 3 }))
    for (const keys of [SAN_FRANCISCO, LONDON, BERLIN]) await b.charge(keys, T)

    for (const keys of [LOS_ANGELES, { country: 'FR', prefix: '+33612' }]) {
      const error = await refusal(b.charge(keys, T))
      expect(error.reason).toBe('SMS_BUDGET_EXHAUSTED')
      expect(error.retryAfterMs).toBe(MIDNIGHT + DAY - T)
    }
  })

  it('when several budgets refuse, then the wait is until the latest of their windows ends', async () => {
    const b = budget(limits({ perCountryPerDay: 2, perPrefixPerHour: 2 }))
    await b.charge(SAN_FRANCISCO, T)
    await b.charge(SAN_FRANCISCO, T)

    const error = await refusal(b.charge(SAN_FRANCISCO, T))

    // The prefix's hour ends at 11:00, the country's day at midnight: waiting for 11:00 would fail.
    expect(error.retryAfterMs).toBe(MIDNIGHT + DAY - T)
  })

  it('when a charge is refused by one budget, then it counts against neither of the other two', async () => {
    const b = budget({ globalPerDay: 4, perCountryPerDay: 3, perPrefixPerHour: 1 })
    await b.charge(SAN_FRANCISCO, T)
    for (let i = 0; i < 5; i += 1) await refusal(b.charge(SAN_FRANCISCO, T)) // prefix refuses

    // Country and global still have all the room the refused charges would have taken.
    await b.charge(LOS_ANGELES, T)
    await b.charge(NEW_YORK, T)
    for (let i = 0; i < 5; i += 1) await refusal(b.charge(usPrefix(i), T)) // country refuses
    await b.charge(LONDON, T)

    const error = await refusal(b.charge(BERLIN, T)) // global refuses: 4 charged in all
    expect(error.retryAfterMs).toBe(MIDNIGHT + DAY - T)
  })

  it('when the UTC hour ends, then the prefix budget is whole again', async () => {
    const b = budget(limits({ perPrefixPerHour: 1 }))
    await b.charge(SAN_FRANCISCO, T)
    const nextHour = MIDNIGHT + 11 * HOUR

    await refusal(b.charge(SAN_FRANCISCO, nextHour - 1))
    await b.charge(SAN_FRANCISCO, nextHour)
    await refusal(b.charge(SAN_FRANCISCO, nextHour + 1))
  })

  it('when the UTC day ends, then the country and global budgets are whole again', async () => {
    const b = budget(limits({ globalPerDay: 1, perCountryPerDay: 1 }))
    await b.charge(SAN_FRANCISCO, T)

    await refusal(b.charge(LOS_ANGELES, MIDNIGHT + DAY - 1))
    await b.charge(LOS_ANGELES, MIDNIGHT + DAY)
    await refusal(b.charge(NEW_YORK, MIDNIGHT + DAY + 1))
  })

  it('when a charge is released, then exactly one SMS more fits, however often release is called', async () => {
    const b = budget(limits({ perPrefixPerHour: 2 }))
    const first = await b.charge(SAN_FRANCISCO, T)
    await b.charge(SAN_FRANCISCO, T)
    await refusal(b.charge(SAN_FRANCISCO, T))

    await first.release()
    await first.release()
    await first.release()

    await b.charge(SAN_FRANCISCO, T)
    await refusal(b.charge(SAN_FRANCISCO, T))
  })

  it('when a charge is released, then all three budgets get it back', async () => {
    const b = budget({ globalPerDay: 1, perCountryPerDay: 1, perPrefixPerHour: 1 })
    const charge = await b.charge(SAN_FRANCISCO, T)
    await refusal(b.charge(SAN_FRANCISCO, T))

    await charge.release()

    // Same prefix (prefix, country and global), then, released again, another country (global).
    const again = await b.charge(SAN_FRANCISCO, T)
    await again.release()
    await b.charge(LONDON, T)
    await refusal(b.charge(BERLIN, T))
  })

  it("when a charge is released after its window ended, then the new window's count is untouched", async () => {
    const b = budget(limits({ perPrefixPerHour: 1 }))
    const old = await b.charge(SAN_FRANCISCO, T)
    const nextHour = MIDNIGHT + 11 * HOUR
    await b.charge(SAN_FRANCISCO, nextHour)

    await old.release()

    await refusal(b.charge(SAN_FRANCISCO, nextHour + 1))
  })

  it.each([
    ['prefix', limits({ perPrefixPerHour: 50 }), () => SAN_FRANCISCO],
    ['country', limits({ perCountryPerDay: 50 }), (i: number) => usPrefix(i)],
    [
      'global',
      limits({ globalPerDay: 50 }),
      (i: number) => ({ country: `C${i % 7}`, prefix: `+9${i}` }),
    ],
  ] as const)(
    'when 200 charges race for a %s budget of 50, then exactly 50 are charged and the rest refused',
    async (_kind, configured, keysOf) => {
      // On PostgreSQL: two replicas, each with a pool of 8 connections, all on the same rows.
      const { budgets: replicas, pools } = budgets(configured, { replicas: 2, poolMax: 8 })
      const replica = (i: number): SmsBudget => {
        const found = replicas[i % replicas.length]
        if (found === undefined) throw new Error('no replica')
        return found
      }

      const results = await Promise.allSettled(
        Array.from({ length: 200 }, (_, i) => replica(i).charge(keysOf(i), T)),
      )

      const charged = results.filter((r) => r.status === 'fulfilled')
      const reasons = results.flatMap((r) =>
        r.status === 'rejected' ? [(r.reason as AuthError).reason] : [],
      )
      expect(charged).toHaveLength(50)
      expect(reasons).toEqual(Array.from({ length: 150 }, () => 'SMS_BUDGET_EXHAUSTED'))
      await refusal(replica(0).charge(keysOf(200), T))
      for (const pool of pools) expect(pool.pool.totalCount).toBeGreaterThan(1)
    },
  )

  it('when charges and releases race, then none fails for the store and every release is given back', async () => {
    const { budgets: replicas } = budgets(limits({ globalPerDay: 20, perCountryPerDay: 20 }), {
      replicas: 2,
      poolMax: 8,
    })
    const replica = (i: number): SmsBudget => {
      const found = replicas[i % replicas.length]
      if (found === undefined) throw new Error('no replica')
      return found
    }
    const keysOf = (i: number): SmsBudgetKeys => ({ country: `C${i % 3}`, prefix: `+9${i % 5}` })

    const results = await Promise.allSettled(
      Array.from({ length: 200 }, async (_, i) => {
        const charge = await replica(i).charge(keysOf(i), T)
        await charge.release()
      }),
    )

    const failures = results.flatMap((r) =>
      r.status === 'rejected' ? [(r.reason as AuthError).reason] : [],
    )
    expect(failures.filter((reason) => reason !== 'SMS_BUDGET_EXHAUSTED')).toEqual([])
    const whole = await Promise.allSettled(
      Array.from({ length: 30 }, (_, i) =>
        replica(i).charge({ country: 'US', prefix: `+1${i}` }, T),
      ),
    )
    expect(whole.filter((r) => r.status === 'fulfilled')).toHaveLength(20)
  })
})

describe('budgetKeys', () => {
  it.each([
    ['+14155552671', 5, { country: 'US', prefix: '+141555' }],
    ['+442071838750', 5, { country: 'GB', prefix: '+4420718' }],
    ['+447400123456', 3, { country: 'GB', prefix: '+44740' }],
    ['+4915123456789', 5, { country: 'DE', prefix: '+4915123' }],
    ['+4930123456', 2, { country: 'DE', prefix: '+4930' }],
    // NANP: one calling code, many regions; the prefix is the area code and exchange.
    ['+12423570000', 6, { country: 'BS', prefix: '+1242357' }],
    ['+16135550123', 3, { country: 'CA', prefix: '+1613' }],
    ['+18002345678', 3, { country: 'US', prefix: '+1800' }],
    // No region: the calling code stands in (international freephone, an unassigned area code).
    ['+80012345678', 4, { country: 'CC800', prefix: '+8001234' }],
    ['+15555550100', 5, { country: 'CC1', prefix: '+155555' }],
    // More digits asked than the national number has: all of it.
    ['+4930123456', 12, { country: 'DE', prefix: '+4930123456' }],
  ])('%s with %i prefix digits → %o', (e164, digits, expected) => {
    expect(budgetKeys(e164, digits)).toEqual(expected)
  })

  it('when the string is not a phone number at all, then it shares one catch-all key', () => {
    expect(budgetKeys('not a number', 5)).toEqual({ country: 'unknown', prefix: 'unknown' })
  })
})
