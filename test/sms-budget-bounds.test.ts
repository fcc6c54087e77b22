/**
 * What one implementation of the SMS budget does that the other has no counterpart for: the
 * memory budget's bound, and the PostgreSQL budget's pruning and outage. Not a rule file: it runs
 * once, and its PostgreSQL part uses the run's server whatever the store of the run.
 */
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import { MemorySmsBudget } from '../src/auth/sms-budget.js'
import { migrate } from '../src/store/migrations.js'
import type { OpenPostgres } from '../src/store/postgres.js'
import { createPostgresSmsBudget } from '../src/store/postgres-sms-budget.js'
import { createTestDatabase, type TestDatabase } from './postgres/test-database.js'
import {
  BERLIN,
  connect,
  DAY,
  HOUR,
  limits,
  LONDON,
  MIDNIGHT,
  refusal,
  SAN_FRANCISCO,
  T,
  usPrefix,
} from './sms-budget-support.js'

describe('MemorySmsBudget bounds', () => {
  it('when more prefixes than max are charged, then max are tracked, the least recently charged is forgotten, and country and global stay exact', async () => {
    const b = new MemorySmsBudget({
      globalPerDay: 6,
      perCountryPerDay: 5,
      perPrefixPerHour: 1,
      max: 2,
    })
    await b.charge(usPrefix(1), T)
    await b.charge(usPrefix(2), T)
    await refusal(b.charge(usPrefix(1), T)) // tracked: refused, and not refreshed by the refusal

    await b.charge(usPrefix(3), T) // evicts prefix 1, the least recently charged

    expect(b.trackedPrefixes()).toBe(2)
    await refusal(b.charge(usPrefix(2), T))
    await refusal(b.charge(usPrefix(3), T))
    // Documented: a forgotten prefix starts again from zero (it fails open for that prefix).
    await b.charge(usPrefix(1), T)
    // The country budget was never forgotten: 4 charged, one more fits, whatever the prefix.
    await b.charge(usPrefix(4), T)
    await refusal(b.charge(usPrefix(5), T))
    await b.charge(LONDON, T)
    await refusal(b.charge(BERLIN, T)) // global: 6
    expect(b.trackedPrefixes()).toBe(2)
  })

  it('when the table is full, then the counters of ended hours go before live ones', async () => {
    const b = new MemorySmsBudget({ ...limits({ perPrefixPerHour: 1 }), max: 2 })
    await b.charge(usPrefix(1), T - HOUR)
    await b.charge(usPrefix(2), T)

    await b.charge(usPrefix(3), T)

    await refusal(b.charge(usPrefix(2), T))
    await refusal(b.charge(usPrefix(3), T))
  })

  it('when 100 000 distinct prefixes are charged, then no more than max are held', async () => {
    const b = new MemorySmsBudget({
      ...limits({ globalPerDay: 1_000_000, perCountryPerDay: 1_000_000 }),
      max: 1_000,
    })
    for (let i = 0; i < 100_000; i += 1) {
      await b.charge({ country: 'US', prefix: `+1${i}` }, T + i)
    }
    expect(b.trackedPrefixes()).toBe(1_000)
  })

  it('when a limit is not a whole number of at least 1, then the budget is not made', () => {
    expect(() => new MemorySmsBudget({ ...limits({ perPrefixPerHour: 0 }), max: 10 })).toThrow(
      RangeError,
    )
  })
})

describe('PostgreSQL SMS budget', () => {
  let database: TestDatabase | undefined
  let pool: OpenPostgres | undefined
  beforeAll(async () => {
    database = await createTestDatabase()
    pool = connect(database.url, 2)
    await migrate(pool.db)
  })
  afterAll(async () => {
    await pool?.close()
    await database?.drop()
  })

  it('when prune runs, then only the counters of ended windows are deleted, and charging goes on', async () => {
    if (pool === undefined) throw new Error('no test database')
    const b = createPostgresSmsBudget(pool.db, limits({ perPrefixPerHour: 1 }), () => undefined)
    await b.charge(SAN_FRANCISCO, T)
    await b.charge(LONDON, T)

    expect(await b.prune(T)).toBe(0)
    expect(await b.prune(MIDNIGHT + 11 * HOUR)).toBe(2) // the two prefixes' 10:00 windows
    expect(await b.prune(MIDNIGHT + DAY)).toBe(3) // US, GB and global of the day

    await b.charge(SAN_FRANCISCO, MIDNIGHT + DAY)
    await refusal(b.charge(SAN_FRANCISCO, MIDNIGHT + DAY))
  })

  it('when the database is unreachable, then a charge is refused with STORE_UNAVAILABLE and health is told', async () => {
    const down = connect('postgres://postgres@127.0.0.1:1/otpauth', 1)
    onTestFinished(() => down.close())
    const outages: unknown[] = []
    const b = createPostgresSmsBudget(down.db, limits({}), (cause) => outages.push(cause))

    const error = await refusal(b.charge(SAN_FRANCISCO, T))

    expect(error.reason).toBe('STORE_UNAVAILABLE')
    expect(outages).toHaveLength(1)
  })
})
