/**
 * Many replicas on one PostgreSQL database: real service processes (the private build of
 * hostile-support.ts) share a fresh database and one code key, and are raced with concurrent
 * calls. Every burst is built only once all clients are connected and is settled as a whole; the
 * assertions are invariants (how many tries were compared, how many calls won, what survives a
 * SIGKILL or a database restart), never an interleaving.
 */
import type { ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { status } from '@grpc/grpc-js'
import { isValidPhoneNumber } from 'libphonenumber-js/max'
import pg from 'pg'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { OtpAuthClient, OtpAuthError, type CallSettings } from '../src/client/otpauth-client.js'
import { checkHealth } from '../src/health/check-health.js'
import { SERVICE_NAME } from '../src/rpc/server.js'
import { failure, PHONES } from './harness.js'
import {
  buildServer,
  runToExit,
  spawnServer,
  startSmsSink,
  type ChildServer,
  type SmsSink,
} from './hostile-support.js'
import {
  createTestDatabase,
  startPostgres,
  startPrivatePostgres,
  stopPostgres,
} from './postgres/test-database.js'

/** Every replica of a test gets this key (32 random bytes, hex), as production requires. */
const CODE_KEY = randomBytes(32).toString('hex')
const PASSWORD = 'replica test password'
/** Well-formed, never issued: a warm-up call that reaches the database and changes nothing. */
const UNKNOWN_TOKEN = 'A'.repeat(43)

let main = ''
beforeAll(() => {
  main = buildServer()
}, 120_000)

// Undone after each test, last first: replicas stop before their database is dropped.
const cleanups: (() => Promise<unknown>)[] = []
afterEach(async () => {
  for (let undo = cleanups.pop(); undo !== undefined; undo = cleanups.pop()) await undo()
})

interface Replica {
  readonly name: string
  readonly server: ChildServer
  readonly client: OtpAuthClient
}

interface Cluster {
  readonly replicas: readonly Replica[]
  readonly sink: SmsSink
  /** Rows of a query on the replicas' database (bigint columns come back as strings). */
  query(text: string, params?: unknown[]): Promise<Record<string, unknown>[]>
}

function replicaEnv(
  databaseUrl: string,
  sink: SmsSink,
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    OTPAUTH_ADDRESS: '127.0.0.1:0',
    OTPAUTH_DATABASE: databaseUrl,
    OTPAUTH_CODE_HMAC_KEY: CODE_KEY,
    OTPAUTH_SMS: 'webhook',
    OTPAUTH_SMS_WEBHOOK_URL: sink.url,
    OTPAUTH_TRUSTED_PROXIES: '127.0.0.1/32',
    // spawnReplica waits for the "otpauth listening" line, which is logged at info.
    OTPAUTH_LOG_LEVEL: 'info',
    OTPAUTH_ARGON2_MEMORY_KIB: '7168',
    OTPAUTH_ARGON2_TIME_COST: '1',
    // The load here is many numbers in few prefixes; the budgets have their own tests.
    OTPAUTH_SMS_BUDGET_PER_PREFIX_PER_HOUR: '1000000',
    OTPAUTH_SHUTDOWN_GRACE_SECONDS: '1',
    ...extra,
  }
}

/** stopProcess ends a replica that is still running: SIGTERM, then SIGKILL after 5 s. */
async function stopProcess(child: ChildProcess, exited: Promise<unknown>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  child.kill('SIGTERM')
  const force = setTimeout(() => child.kill('SIGKILL'), 5_000)
  await exited
  clearTimeout(force)
}

/** spawnReplica starts a replica process that is stopped when the test ends. */
async function spawnReplica(env: Record<string, string>): Promise<ChildServer> {
  const server = await spawnServer(main, env)
  cleanups.push(() => stopProcess(server.child, server.exited))
  return server
}

/** startReplica spawns one replica and connects a client to it (a warm-up call goes through). */
async function startReplica(name: string, env: Record<string, string>): Promise<Replica> {
  const server = await spawnReplica(env)
  const client = new OtpAuthClient(server.address, {
    timeoutMs: 15_000,
    channelOptions: { 'grpc.use_local_subchannel_pool': 1 },
  })
  cleanups.push(() => {
    client.close()
    return Promise.resolve()
  })
  const warmUp = await failure(client.validateSession({ sessionToken: UNKNOWN_TOKEN }))
  expect(warmUp.reason, `${name} warm-up`).toBe('SESSION_INVALID')
  return { name, server, client }
}

/**
 * startCluster makes a fresh database (on the run's server, or on `server`), an SMS sink, and
 * `count` replicas started at the same time, named A, B, C…
 */
async function startCluster(
  count: number,
  options: { env?: Record<string, string>; server?: string } = {},
): Promise<Cluster> {
  const database = await createTestDatabase(options.server)
  // A private server is destroyed whole (and may still be stopped when a test fails).
  if (options.server === undefined) cleanups.push(() => database.drop())
  const sink = await startSmsSink()
  const env = replicaEnv(database.url, sink, options.env)
  const names = ['A', 'B', 'C', 'D'].slice(0, count)
  const started = await Promise.allSettled(names.map((name) => startReplica(name, env)))
  const replicas = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []))
  for (const r of started) if (r.status === 'rejected') throw r.reason
  return {
    replicas,
    sink,
    query: (text, params) => query(database.url, text, params),
  }
}

async function query(
  url: string,
  text: string,
  params: unknown[] = [],
): Promise<Record<string, unknown>[]> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 })
  client.on('error', () => undefined)
  await client.connect()
  try {
    return (await client.query<Record<string, unknown>>(text, params)).rows
  } finally {
    await client.end()
  }
}

/** from makes a call come from `ip` (the replicas trust loopback's x-forwarded-for). */
function from(ip: string, timeoutMs?: number): CallSettings {
  return {
    metadata: { 'x-forwarded-for': ip },
    ...(timeoutMs === undefined ? {} : { timeoutMs }),
  }
}

/** ip is the n-th address of 10.0.0.0/8: distinct n, distinct clients. */
function ip(n: number): string {
  return `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`
}

/** phones returns a supply of distinct valid UK mobile numbers. */
function phones(): () => string {
  let n = 100_000
  return () => {
    for (;;) {
      n += 1
      const phone = `+447911${String(n)}`
      if (isValidPhoneNumber(phone)) return phone
    }
  }
}

/** outcome names a settled call: OK, or the status and the ErrorInfo reason. */
function outcome(result: PromiseSettledResult<unknown>): string {
  if (result.status === 'fulfilled') return 'OK'
  const error: unknown = result.reason
  if (error instanceof OtpAuthError) return `${status[error.code]} ${error.reason ?? '-'}`
  return `thrown ${String(error)}`
}

/** tally counts the outcomes of a burst, for one readable assertion. */
function tally(results: readonly PromiseSettledResult<unknown>[]): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const r of results) {
    const key = outcome(r)
    counts[key] = (counts[key] ?? 0) + 1
  }
  return counts
}

/** burst fires `total` calls at once, spread round-robin over the replicas, and settles them all. */
function burst<T>(
  replicas: readonly Replica[],
  total: number,
  call: (replica: Replica, i: number) => Promise<T>,
): Promise<PromiseSettledResult<T>[]> {
  const calls: Promise<T>[] = []
  for (let i = 0; i < total; i += 1) {
    calls.push(call(replicas[i % replicas.length] as Replica, i))
  }
  return Promise.allSettled(calls)
}

function three(cluster: Cluster): [Replica, Replica, Replica] {
  const [a, b, c] = cluster.replicas
  if (a === undefined || b === undefined || c === undefined) throw new Error('need 3 replicas')
  return [a, b, c]
}

function expectFailure(err: OtpAuthError, code: status, reason: string, where: string): void {
  expect([status[err.code], err.reason], where).toEqual([status[code], reason])
}

/** signUp registers (with a password unless null) and verifies a number from one address. */
async function signUp(
  cluster: Cluster,
  register: Replica,
  verify: Replica,
  phone: string,
  address: string,
  password: string | null = PASSWORD,
): Promise<void> {
  await register.client.register(
    password === null ? { phoneNumber: phone } : { phoneNumber: phone, password },
    from(address),
  )
  const code = cluster.sink.lastCode(phone, 'register')
  await verify.client.verifyOtp({ phoneNumber: phone, code }, from(address))
}

function smsCount(sink: SmsSink, phone: string, purpose: string): number {
  return sink.received.filter((m) => m.phone_number === phone && m.purpose === purpose).length
}

describe('Many replicas on one PostgreSQL database', () => {
  it('when 60 wrong codes for one number arrive at 3 replicas at once from 60 addresses, then only 5 are compared and the right code is burned everywhere', async () => {
    const cluster = await startCluster(3)
    const replicas = three(cluster)
    const phone = PHONES.alice
    await replicas[0].client.register({ phoneNumber: phone }, from('192.0.2.1'))
    expect(smsCount(cluster.sink, phone, 'register')).toBe(1)
    const code = cluster.sink.lastCode(phone, 'register')
    const wrong = (i: number): string => String((Number(code) + 1 + i) % 1_000_000).padStart(6, '0')

    const results = await burst(replicas, 60, (r, i) =>
      r.client.verifyOtp({ phoneNumber: phone, code: wrong(i) }, from(ip(1_000 + i))),
    )

    expect(tally(results)).toEqual({ 'UNAUTHENTICATED INVALID_CREDENTIALS': 60 })
    const [row] = await cluster.query(
      'select tries, max_tries, consumed from codes where phone = $1 and purpose = $2',
      [phone, 'register'],
    )
    expect(row).toEqual({ tries: 5, max_tries: 5, consumed: false })
    for (const [i, r] of replicas.entries()) {
      const err = await failure(
        r.client.verifyOtp({ phoneNumber: phone, code }, from(ip(2_000 + i))),
      )
      expectFailure(err, status.UNAUTHENTICATED, 'INVALID_CREDENTIALS', `right code on ${r.name}`)
    }
    const [user] = await cluster.query('select verified_at from users where phone = $1', [phone])
    expect(user).toEqual({ verified_at: null })
    console.log(
      `distributed guessing: 60 guesses over 3 replicas from 60 addresses, tries recorded ` +
        `${String(row?.['tries'])}, right code then refused on all 3`,
    )
  }, 60_000)

  it('when one right login code reaches 3 replicas 60 times at once, then exactly one Login succeeds and one session exists', async () => {
    const cluster = await startCluster(3, { env: { OTPAUTH_RESEND_COOLDOWN_SECONDS: '0' } })
    const replicas = three(cluster)
    const phone = PHONES.bob
    await signUp(cluster, replicas[0], replicas[1], phone, '192.0.2.2', null)
    await replicas[2].client.requestLoginCode({ phoneNumber: phone }, from('192.0.2.2'))
    const code = cluster.sink.lastCode(phone, 'login')

    const results = await burst(replicas, 60, (r, i) =>
      r.client.login(
        { phoneNumber: phone, credential: { $case: 'code', value: code } },
        from(ip(3_000 + i)),
      ),
    )

    expect(tally(results)).toEqual({ OK: 1, 'UNAUTHENTICATED INVALID_CREDENTIALS': 59 })
    const [sessions] = await cluster.query('select count(*)::int as n from sessions')
    expect(sessions).toEqual({ n: 1 })
    const winner = results.findIndex((r) => r.status === 'fulfilled')
    const won = results[winner]
    if (won?.status !== 'fulfilled') throw new Error('no Login succeeded')
    for (const r of replicas) {
      const info = await r.client.validateSession({ sessionToken: won.value.sessionToken })
      expect(info.phoneNumber, r.name).toBe(phone)
    }
    console.log(
      `one code, many replicas: 60 Logins with one code over 3 replicas, 1 succeeded ` +
        `(on ${replicas[winner % 3]?.name ?? '?'}), 59 INVALID_CREDENTIALS, 1 session row`,
    )
  }, 60_000)

  it('when 60 Register and 60 RequestLoginCode calls for two numbers reach 3 replicas at once, then each number gets exactly one SMS and the rest are RESEND_TOO_SOON', async () => {
    const cluster = await startCluster(3)
    const replicas = three(cluster)
    const fresh = PHONES.carol
    const verified = PHONES.dave
    await signUp(cluster, replicas[0], replicas[1], verified, '192.0.2.3')
    // The sign-up SMS started the 30 s cooldown: forget it, as if the wait were over.
    await cluster.query('delete from number_sends where phone = $1', [verified])

    const results = await burst(replicas, 120, (r, i) =>
      i % 2 === 0
        ? r.client.register({ phoneNumber: fresh }, from(ip(4_000 + i)))
        : r.client.requestLoginCode({ phoneNumber: verified }, from(ip(4_000 + i))),
    )

    const registers = results.filter((_, i) => i % 2 === 0)
    const loginCodes = results.filter((_, i) => i % 2 === 1)
    expect(tally(registers)).toEqual({ OK: 1, 'RESOURCE_EXHAUSTED RESEND_TOO_SOON': 59 })
    expect(tally(loginCodes)).toEqual({ OK: 1, 'RESOURCE_EXHAUSTED RESEND_TOO_SOON': 59 })
    for (const r of results) {
      if (r.status === 'rejected' && r.reason instanceof OtpAuthError) {
        expect(r.reason.retryDelayMs).toBeGreaterThan(0)
        expect(r.reason.retryDelayMs).toBeLessThanOrEqual(31_000)
      }
    }
    expect(smsCount(cluster.sink, fresh, 'register')).toBe(1)
    expect(smsCount(cluster.sink, verified, 'login')).toBe(1)
    const rows = await cluster.query(
      'select phone, cardinality(sends) as sends from number_sends order by phone',
    )
    expect(rows).toEqual(
      [
        { phone: fresh, sends: 1 },
        { phone: verified, sends: 1 },
      ].sort((x, y) => x.phone.localeCompare(y.phone)),
    )
    console.log(
      'concurrent sends: 60 Register + 60 RequestLoginCode over 3 replicas, 1 SMS per number, ' +
        '118 RESEND_TOO_SOON',
    )
  }, 60_000)

  it('when one address fails once on each of 3 replicas, then it is locked out on every replica even with the right code, and another address still verifies', async () => {
    const cluster = await startCluster(3)
    const replicas = three(cluster)
    const attacker = '203.0.113.66'
    const phone = PHONES.alice
    await replicas[0].client.register({ phoneNumber: phone }, from('192.0.2.4'))
    const code = cluster.sink.lastCode(phone, 'register')
    const wrong = String((Number(code) + 1) % 1_000_000).padStart(6, '0')

    const strikes = await burst(replicas, 3, (r) =>
      r.client.verifyOtp({ phoneNumber: phone, code: wrong }, from(attacker)),
    )
    expect(tally(strikes)).toEqual({ 'UNAUTHENTICATED INVALID_CREDENTIALS': 3 })

    const locked = await burst(replicas, 60, (r) =>
      r.client.verifyOtp({ phoneNumber: phone, code }, from(attacker)),
    )
    expect(tally(locked)).toEqual({ 'RESOURCE_EXHAUSTED CLIENT_LOCKED_OUT': 60 })
    for (const r of locked) {
      if (r.status === 'rejected' && r.reason instanceof OtpAuthError) {
        expect(r.reason.retryDelayMs).toBeGreaterThan(3_500_000)
      }
    }
    for (const r of replicas) {
      const err = await failure(
        r.client.login(
          { phoneNumber: phone, credential: { $case: 'password', value: PASSWORD } },
          from(attacker),
        ),
      )
      expectFailure(err, status.RESOURCE_EXHAUSTED, 'CLIENT_LOCKED_OUT', `Login on ${r.name}`)
    }
    // The locked calls compared nothing: the code has 2 of its 5 tries left.
    const [row] = await cluster.query('select tries from codes where phone = $1', [phone])
    expect(row).toEqual({ tries: 3 })
    await replicas[2].client.verifyOtp({ phoneNumber: phone, code }, from('198.51.100.7'))

    // One address bursting 60 wrong codes over 3 replicas: only the threshold's 3 are compared.
    const other = PHONES.bob
    await replicas[1].client.register({ phoneNumber: other }, from('192.0.2.5'))
    const otherCode = cluster.sink.lastCode(other, 'register')
    const otherWrong = String((Number(otherCode) + 1) % 1_000_000).padStart(6, '0')
    const guesses = await burst(replicas, 60, (r) =>
      r.client.verifyOtp({ phoneNumber: other, code: otherWrong }, from('203.0.113.77')),
    )
    expect(tally(guesses)).toEqual({
      'UNAUTHENTICATED INVALID_CREDENTIALS': 3,
      'RESOURCE_EXHAUSTED CLIENT_LOCKED_OUT': 57,
    })
    const [otherRow] = await cluster.query('select tries from codes where phone = $1', [other])
    expect(otherRow).toEqual({ tries: 3 })
    console.log(
      'lockout across replicas: 3 strikes (one per replica) lock the address on all 3 (60 ' +
        'right-code calls refused); 60 wrong codes from one address: 3 compared, 57 locked out',
    )
  }, 60_000)

  it('when 60 wrong passwords for one number reach 3 replicas at once from 20 addresses, then exactly the limit of 10 is counted and password login is disabled everywhere', async () => {
    const cluster = await startCluster(3, {
      env: {
        OTPAUTH_NUMBER_FAILURE_LIMIT: '10',
        OTPAUTH_LOCKOUT_THRESHOLD: '1000',
        OTPAUTH_RESEND_COOLDOWN_SECONDS: '0',
      },
    })
    const replicas = three(cluster)
    const phone = PHONES.carol
    await signUp(cluster, replicas[0], replicas[1], phone, '192.0.2.6')

    const results = await burst(replicas, 60, (r, i) =>
      r.client.login(
        { phoneNumber: phone, credential: { $case: 'password', value: `wrong password ${i}` } },
        from(ip(5_000 + (i % 20))),
      ),
    )

    expect(tally(results)).toEqual({
      'UNAUTHENTICATED INVALID_CREDENTIALS': 10,
      'FAILED_PRECONDITION PASSWORD_LOGIN_DISABLED': 50,
    })
    for (const [i, r] of replicas.entries()) {
      const err = await failure(
        r.client.login(
          { phoneNumber: phone, credential: { $case: 'password', value: PASSWORD } },
          from(ip(6_000 + i)),
        ),
      )
      expectFailure(
        err,
        status.FAILED_PRECONDITION,
        'PASSWORD_LOGIN_DISABLED',
        `right password on ${r.name}`,
      )
    }
    const [row] = await cluster.query('select failures from number_failures where phone = $1', [
      phone,
    ])
    expect(row).toEqual({ failures: 10 })

    // A code login still works, and it lifts the cap for every replica.
    await replicas[1].client.requestLoginCode({ phoneNumber: phone }, from('192.0.2.6'))
    const code = cluster.sink.lastCode(phone, 'login')
    await replicas[2].client.login(
      { phoneNumber: phone, credential: { $case: 'code', value: code } },
      from('192.0.2.6'),
    )
    await replicas[0].client.login(
      { phoneNumber: phone, credential: { $case: 'password', value: PASSWORD } },
      from(ip(6_100)),
    )
    console.log(
      'per-number cap across replicas: 60 wrong passwords over 3 replicas, 10 compared ' +
        '(number_failures = 10), 50 PASSWORD_LOGIN_DISABLED, right password refused on all 3',
    )
  }, 60_000)

  it('when a number registers on A, verifies on B and logs in on C, then its session works on A and a Logout on B ends it on C', async () => {
    const cluster = await startCluster(3)
    const [a, b, c] = three(cluster)
    const phone = PHONES.dave
    const address = '192.0.2.8'

    await a.client.register({ phoneNumber: phone, password: PASSWORD }, from(address))
    const code = cluster.sink.lastCode(phone, 'register')
    await b.client.verifyOtp({ phoneNumber: phone, code }, from(address))
    const session = await c.client.login(
      { phoneNumber: phone, credential: { $case: 'password', value: PASSWORD } },
      from(address),
    )
    const info = await a.client.validateSession({ sessionToken: session.sessionToken })
    expect(info.phoneNumber).toBe(phone)
    expect(info.userId).toBe(session.userId)

    await b.client.logout({ sessionToken: session.sessionToken })
    for (const r of [c, a, b]) {
      const err = await failure(r.client.validateSession({ sessionToken: session.sessionToken }))
      expectFailure(err, status.UNAUTHENTICATED, 'SESSION_INVALID', `after Logout, on ${r.name}`)
    }
  }, 60_000)

  it('when PostgreSQL stops under load and starts again, then calls are UNAVAILABLE (never INTERNAL), health follows, and both replicas recover with their sessions', async () => {
    const server = await startPrivatePostgres()
    cleanups.push(() => server.destroy())
    const cluster = await startCluster(2, { server: server.url })
    const [a, b] = cluster.replicas as [Replica, Replica]
    const replicas = [a, b]
    await signUp(cluster, a, b, PHONES.alice, '192.0.2.9')
    const tokens: string[] = []
    for (const r of replicas) {
      const session = await r.client.login(
        { phoneNumber: PHONES.alice, credential: { $case: 'password', value: PASSWORD } },
        from('192.0.2.9'),
      )
      tokens.push(session.sessionToken)
    }

    type Phase = 'before' | 'down' | 'switching' | 'recovered'
    let phase: Phase = 'before'
    let stopped = false
    const outcomes: Record<Phase, PromiseSettledResult<unknown>[]> = {
      before: [],
      down: [],
      switching: [],
      recovered: [],
    }
    const supply = phones()
    let next = 0
    const worker = async (replica: Replica, w: number): Promise<void> => {
      for (let i = 0; !stopped; i += 1) {
        const startedIn = phase
        const call =
          (w + i) % 2 === 0
            ? replica.client.validateSession(
                { sessionToken: tokens[i % tokens.length] ?? '' },
                { timeoutMs: 8_000 },
              )
            : replica.client.requestLoginCode(
                { phoneNumber: supply() },
                from(ip(7_000 + (next += 1)), 8_000),
              )
        const [result] = await Promise.allSettled([call])
        // A call counts for its phase only if the phase held from its start to its end.
        outcomes[startedIn === phase ? startedIn : 'switching'].push(result)
        await sleep(20)
      }
    }
    const workers = replicas.flatMap((r) => Array.from({ length: 10 }, (_, w) => worker(r, w)))
    cleanups.push(async () => {
      stopped = true
      await Promise.all(workers)
    })

    /** Readiness (the OtpAuth service) follows the database; liveness ("") stays SERVING. */
    const health = (r: Replica, service = SERVICE_NAME): Promise<string> =>
      checkHealth(r.server.address, service, 2_000).catch((e: unknown) => `failed: ${String(e)}`)
    /** alive fails the test at once, with its stderr, if a replica process has exited. */
    const alive = (): void => {
      for (const r of replicas) {
        const { exitCode, signalCode } = r.server.child
        if (exitCode !== null || signalCode !== null) {
          throw new Error(
            `replica ${r.name} exited (${String(exitCode ?? signalCode)}) while PostgreSQL was ` +
              `${phase}:\n${r.server.stderr().slice(0, 1_500)}`,
          )
        }
      }
    }
    const waitFor = async (what: () => Promise<boolean>, ms: number): Promise<number> => {
      const started = performance.now()
      for (;;) {
        alive()
        if (await what()) return performance.now() - started
        if (performance.now() - started > ms) throw new Error(`not within ${ms} ms`)
        await sleep(100)
      }
    }

    await sleep(700)
    phase = 'switching'
    await stopPostgres(server)
    phase = 'down'
    await sleep(200)
    alive()
    const notServingMs = await waitFor(
      async () =>
        (await Promise.all(replicas.map((r) => health(r)))).every((s) => s === 'NOT_SERVING'),
      5_000,
    )
    for (const r of replicas) expect(await health(r, ''), `${r.name} liveness`).toBe('SERVING')
    await sleep(1_500)
    phase = 'switching'
    const restartStarted = performance.now()
    await startPostgres(server)
    const recoveredMs = await Promise.all(
      replicas.map((r) =>
        waitFor(async () => {
          const [served] = await Promise.allSettled([
            r.client.validateSession({ sessionToken: tokens[0] ?? '' }, { timeoutMs: 2_000 }),
          ])
          return served.status === 'fulfilled' && (await health(r)) === 'SERVING'
        }, 10_000),
      ),
    )
    const sinceRestart = performance.now() - restartStarted
    await sleep(500)
    phase = 'recovered'
    await sleep(1_000)
    stopped = true
    await Promise.all(workers)

    const all = Object.values(outcomes).flat()
    const failures = all.filter((r) => r.status === 'rejected')
    expect(
      Object.keys(tally(failures)).filter((k) => k !== 'UNAVAILABLE STORE_UNAVAILABLE'),
    ).toEqual([])
    expect(tally(outcomes.before)).toEqual({ OK: outcomes.before.length })
    expect(outcomes.down.length).toBeGreaterThan(20)
    expect(tally(outcomes.down)).toEqual({
      'UNAVAILABLE STORE_UNAVAILABLE': outcomes.down.length,
    })
    expect(outcomes.recovered.length).toBeGreaterThan(20)
    expect(tally(outcomes.recovered)).toEqual({ OK: outcomes.recovered.length })
    expect(sinceRestart).toBeLessThan(10_000)
    for (const r of replicas) {
      expect(r.server.child.exitCode, `${r.name} still running`).toBeNull()
      expect(r.server.child.signalCode, `${r.name} still running`).toBeNull()
      expect(await health(r)).toBe('SERVING')
      for (const token of tokens) {
        expect((await r.client.validateSession({ sessionToken: token })).phoneNumber).toBe(
          PHONES.alice,
        )
      }
      expect(r.server.lines.filter((l) => l.includes('"status":"INTERNAL"'))).toEqual([])
    }
    console.log(
      `PostgreSQL restart: ${all.length} calls on 2 replicas (${outcomes.down.length} while ` +
        `down, all UNAVAILABLE STORE_UNAVAILABLE, 0 INTERNAL); NOT_SERVING after ` +
        `${notServingMs.toFixed(0)} ms; serving again ${recoveredMs.map((ms) => ms.toFixed(0)).join(' / ')} ms after the restart ` +
        `(${sinceRestart.toFixed(0)} ms incl. pg_ctl start); sessions from before still valid`,
    )
  }, 60_000)

  it('when one of 3 replicas is SIGKILLed under sign-up and login load, then everything it acknowledged works on the other two, which keep serving', async () => {
    const cluster = await startCluster(3)
    const [a, b, c] = three(cluster)
    let alive: Replica[] = [a, b, c]
    let stopped = false
    const supply = phones()
    let flows = 0
    const byReplica = new Map<string, PromiseSettledResult<unknown>[]>(
      [a, b, c].map((r) => [r.name, []]),
    )
    const acked = {
      sessionsByA: [] as { token: string; phone: string }[],
      verifiedByA: [] as string[],
    }
    const ask = async <T>(replica: Replica, call: Promise<T>): Promise<T | undefined> => {
      const [result] = await Promise.allSettled([call])
      byReplica.get(replica.name)?.push(result)
      return result.status === 'fulfilled' ? result.value : undefined
    }
    const worker = async (): Promise<void> => {
      while (!stopped) {
        const flow = (flows += 1)
        const phone = supply()
        const address = from(ip(8_000 + flow))
        // Each step of a flow goes to the next replica still alive.
        const pick = (step: number): Replica => alive[(flow + step) % alive.length] as Replica
        const registrar = pick(0)
        const sent = await ask(
          registrar,
          registrar.client.register({ phoneNumber: phone, password: PASSWORD }, address),
        )
        if (sent === undefined) continue
        const code = cluster.sink.lastCode(phone, 'register')
        const verifier = pick(1)
        const verified = await ask(
          verifier,
          verifier.client.verifyOtp({ phoneNumber: phone, code }, address),
        )
        if (verified === undefined) continue
        if (verifier === a) acked.verifiedByA.push(phone)
        const loginAt = pick(2)
        const session = await ask(
          loginAt,
          loginAt.client.login(
            { phoneNumber: phone, credential: { $case: 'password', value: PASSWORD } },
            address,
          ),
        )
        if (session !== undefined && loginAt === a) {
          acked.sessionsByA.push({ token: session.sessionToken, phone })
        }
      }
    }
    const workers = Array.from({ length: 24 }, () => worker())
    cleanups.push(async () => {
      stopped = true
      await Promise.all(workers)
    })

    await sleep(1_200 + Math.random() * 600)
    a.server.child.kill('SIGKILL')
    alive = [b, c]
    expect(await a.server.exited).toBe('SIGKILL')
    const atKill = { flows, sessions: acked.sessionsByA.length, verified: acked.verifiedByA.length }
    await sleep(1_500)
    stopped = true
    await Promise.all(workers)

    // Calls to B and C never failed; those to A failed only as a dead server does.
    for (const r of [b, c]) {
      expect(tally(byReplica.get(r.name) ?? []), r.name).toEqual({
        OK: byReplica.get(r.name)?.length,
      })
    }
    const aFailures = tally((byReplica.get('A') ?? []).filter((r) => r.status === 'rejected'))
    expect(Object.keys(aFailures).filter((k) => !k.startsWith('UNAVAILABLE '))).toEqual([])
    expect(acked.sessionsByA.length).toBeGreaterThan(0)
    expect(acked.verifiedByA.length).toBeGreaterThan(0)
    expect(flows).toBeGreaterThan(atKill.flows)

    for (const { token, phone } of acked.sessionsByA) {
      for (const r of [b, c]) {
        expect((await r.client.validateSession({ sessionToken: token })).phoneNumber, r.name).toBe(
          phone,
        )
      }
    }
    const logins = await Promise.allSettled(
      acked.verifiedByA.flatMap((phone, i) =>
        [b, c].map((r) =>
          r.client.login(
            { phoneNumber: phone, credential: { $case: 'password', value: PASSWORD } },
            from(ip(60_000 + i)),
          ),
        ),
      ),
    )
    expect(tally(logins)).toEqual({ OK: acked.verifiedByA.length * 2 })
    console.log(
      `SIGKILL under load: ${flows} sign-up flows over 3 replicas, A killed after ${atKill.flows}; ` +
        `A had acknowledged ${acked.verifiedByA.length} verifications and ` +
        `${acked.sessionsByA.length} sessions, all usable on B and C; ` +
        `calls to A failed ${JSON.stringify(aFailures)}, 0 failures on B and C`,
    )
  }, 60_000)

  it('when a replica starts with a different code key, then it is refused; with the first key as OTPAUTH_CODE_HMAC_PREVIOUS_KEY it starts and verifies the codes the first replica sent', async () => {
    const database = await createTestDatabase()
    cleanups.push(() => database.drop())
    const sink = await startSmsSink()
    const first = await startReplica('first', replicaEnv(database.url, sink))
    const phone = PHONES.bob
    await first.client.register({ phoneNumber: phone }, from('192.0.2.10'))
    const code = sink.lastCode(phone, 'register')

    const otherKey = randomBytes(32).toString('hex')
    const refused = await runToExit(
      main,
      replicaEnv(database.url, sink, { OTPAUTH_CODE_HMAC_KEY: otherKey }),
    )
    expect(typeof refused.code).toBe('number')
    expect(refused.code).not.toBe(0)
    expect(refused.stderr).toMatch(/OTPAUTH_CODE_HMAC_KEY differs/)
    expect(refused.stderr).not.toContain(otherKey)
    expect(refused.stderr).not.toContain(CODE_KEY)

    const rotated = await startReplica(
      'rotated',
      replicaEnv(database.url, sink, {
        OTPAUTH_CODE_HMAC_KEY: otherKey,
        OTPAUTH_CODE_HMAC_PREVIOUS_KEY: CODE_KEY,
      }),
    )
    await rotated.client.verifyOtp({ phoneNumber: phone, code }, from('192.0.2.10'))
    const [user] = await query(database.url, 'select verified_at from users where phone = $1', [
      phone,
    ])
    expect(user?.['verified_at']).not.toBeNull()
  }, 60_000)

  it('when RevokeSession on A ends a session, then B refuses it at once; Logout with all_sessions on B ends the sessions made on A and C', async () => {
    const cluster = await startCluster(3)
    const [a, b, c] = three(cluster)
    const phone = PHONES.carol
    const address = '192.0.2.11'
    await signUp(cluster, a, b, phone, address)
    const login = async (r: Replica): Promise<string> =>
      (
        await r.client.login(
          { phoneNumber: phone, credential: { $case: 'password', value: PASSWORD } },
          from(address),
        )
      ).sessionToken
    const onA = await login(a)
    const onB = await login(b)
    const onC = await login(c)
    const idOf = async (token: string): Promise<string> =>
      (await c.client.validateSession({ sessionToken: token })).sessionId
    const [idA, idB, idC] = [await idOf(onA), await idOf(onB), await idOf(onC)]
    // B has served the doomed session before: nothing it may have kept can answer for it later.
    expect((await b.client.validateSession({ sessionToken: onC })).sessionId).toBe(idC)

    await a.client.revokeSession({ sessionToken: onA, sessionId: idC })
    const refused = await failure(b.client.validateSession({ sessionToken: onC }))

    expectFailure(refused, status.UNAUTHENTICATED, 'SESSION_INVALID', 'revoked on A, asked on B')
    const listed = await b.client.listSessions({ sessionToken: onB })
    expect(listed.sessions.map((s) => s.sessionId).sort()).toEqual([idA, idB].sort())

    // Log out everywhere from B, with sessions made on A and C since.
    const sinceA = await login(a)
    const sinceC = await login(c)
    await b.client.logout({ sessionToken: onB, allSessions: true })

    for (const token of [onA, onB, sinceA, sinceC]) {
      for (const r of [a, b, c]) {
        const err = await failure(r.client.validateSession({ sessionToken: token }))
        expectFailure(
          err,
          status.UNAUTHENTICATED,
          'SESSION_INVALID',
          `after Logout all, on ${r.name}`,
        )
      }
    }
    const [row] = await cluster.query('select count(*)::int as n from sessions')
    expect(row).toEqual({ n: 0 })
  }, 60_000)
})
