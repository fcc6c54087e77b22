/**
 * PostgreSQL faults, end to end: the database unreachable at start-up (retries, then a clear exit
 * without the password), coming up during start-up, going down and coming back while serving,
 * connections killed under the pool; start-up refusals that keep replicas consistent (clock skew,
 * code key) and the embedded SQLite store refusing a second process.
 *
 * Runs in the 'sqlite' project but uses PostgreSQL explicitly: the run's shared server for the
 * tests that only need a database, a private cluster for the ones that stop it.
 */
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { status } from '@grpc/grpc-js'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import { keyFingerprint } from '../src/auth/one-time-code.js'
import { OtpAuthClient, OtpAuthError } from '../src/client/otpauth-client.js'
import type { Config } from '../src/config.js'
import { checkHealth } from '../src/health/check-health.js'
import { SERVICE_NAME } from '../src/rpc/server.js'
import {
  FakeClock,
  loginWithPassword,
  PHONES,
  signUpVerified,
  startTestServer,
  TEST_CODE_KEY,
  type TestServer,
} from './harness.js'
import { buildServer, runToExit, spawnServer, UnhandledGuard } from './hostile-support.js'
import { freePort } from './postgres/cluster.js'
import {
  createTestDatabase,
  startPostgres,
  startPrivatePostgres,
  stopPostgres,
  terminateConnections,
  type PrivatePostgres,
} from './postgres/test-database.js'

let main = ''
beforeAll(() => {
  main = buildServer()
}, 120_000)

/** The environment of a spawned replica: loopback, cheap argon2, console SMS, info logs. */
function replicaEnv(database: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    OTPAUTH_ADDRESS: '127.0.0.1:0',
    OTPAUTH_DATABASE: database,
    OTPAUTH_CODE_HMAC_KEY: TEST_CODE_KEY.toString('hex'),
    OTPAUTH_MAX_CLOCK_SKEW_MS: '0',
    OTPAUTH_LOG_LEVEL: 'info',
    OTPAUTH_ARGON2_MEMORY_KIB: '7168',
    OTPAUTH_ARGON2_TIME_COST: '1',
    ...extra,
  }
}

/** A database of this test's own on the run's shared server, dropped when the test ends. */
async function sharedDatabase(): Promise<string> {
  const database = await createTestDatabase()
  onTestFinished(() => database.drop())
  return database.url
}

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'otpauth-pgfault-'))
  onTestFinished(() => {
    rmSync(dir, { recursive: true, force: true })
  })
  return dir
}

/**
 * The in-process service on the given PostgreSQL database (clock skew unchecked unless the config
 * says otherwise). The directory is the test's, so a start-up that is refused leaves none behind.
 */
function startOnPostgres(
  databaseUrl: string,
  config: Partial<Config> = {},
  clock?: FakeClock,
): Promise<TestServer> {
  return startTestServer({
    config: { databaseUrl, codeHmacKey: TEST_CODE_KEY, maxClockSkewMs: 0, ...config },
    dir: tempDir(),
    ...(clock === undefined ? {} : { clock }),
  })
}

/** The health of the service (readiness) by default; "" is the whole server (liveness). */
function health(address: string, service = SERVICE_NAME): Promise<string> {
  return checkHealth(address, service, 2_000)
}

/** waitFor polls until check() returns true (errors count as false); false on timeout. */
async function waitFor(check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs
  for (;;) {
    if (await check().catch(() => false)) return true
    if (performance.now() > deadline) return false
    await sleep(100)
  }
}

/** timed runs a call and returns how long it took with its outcome. */
async function timed(
  call: Promise<unknown>,
): Promise<{ ms: number; error: OtpAuthError | undefined }> {
  const started = performance.now()
  try {
    await call
    return { ms: performance.now() - started, error: undefined }
  } catch (error) {
    if (!(error instanceof OtpAuthError)) throw error
    return { ms: performance.now() - started, error }
  }
}

async function readRows(url: string, text: string): Promise<Record<string, unknown>[]> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return (await client.query<Record<string, unknown>>(text)).rows
  } finally {
    await client.end()
  }
}

describe('PostgreSQL at start-up', () => {
  it('when PostgreSQL is unreachable, then the replica logs its retries and exits non-zero within the start-up timeout, naming OTPAUTH_DATABASE and never the password', async () => {
    const port = await freePort() // nothing listens there
    const url = `postgres://otp:s3cr3t-pw@127.0.0.1:${port}/x`

    const started = performance.now()
    const { code, stdout, stderr } = await runToExit(
      main,
      replicaEnv(url, { OTPAUTH_DATABASE_STARTUP_TIMEOUT_SECONDS: '2' }),
      15_000,
    )
    const ms = performance.now() - started

    expect(code).toBe(1)
    expect(ms).toBeLessThan(6_000)
    expect(ms).toBeGreaterThan(1_000) // it did retry before giving up
    const retries = stdout.split('\n').filter((l) => l.includes('PostgreSQL unreachable; retrying'))
    expect(retries.length).toBeGreaterThanOrEqual(2)
    expect(retries[0]).toContain(`postgres://otp:***@127.0.0.1:${port}/x`)
    expect(stderr).toMatch(/^otpauth: cannot use the PostgreSQL database in OTPAUTH_DATABASE/)
    expect(stderr).toContain('ECONNREFUSED')
    expect(`${stdout}\n${stderr}`).not.toContain('s3cr3t-pw')
    console.log(
      `unreachable PostgreSQL: ${retries.length} retries, exit ${String(code)} after ${ms.toFixed(0)} ms`,
    )
  })

  it('when the database does not exist, then the replica exits at once (nothing to wait for), naming OTPAUTH_DATABASE', async () => {
    const url = new URL(await sharedDatabase())
    url.pathname = '/otpauth_no_such_database'
    url.password = 's3cr3t-pw'
    const started = performance.now()
    const { code, stdout, stderr } = await runToExit(main, replicaEnv(url.toString()))
    const ms = performance.now() - started

    expect(code).toBe(1)
    expect(ms).toBeLessThan(2_000)
    expect(stdout).not.toContain('retrying')
    expect(stderr).toMatch(/^otpauth: cannot use the PostgreSQL database in OTPAUTH_DATABASE/)
    expect(stderr).toContain('"otpauth_no_such_database" does not exist')
    expect(`${stdout}\n${stderr}`).not.toContain('s3cr3t-pw')
  })

  it('when the URL is malformed, then the replica exits 2 naming OTPAUTH_DATABASE, without the password', async () => {
    const { code, stdout, stderr } = await runToExit(
      main,
      replicaEnv('postgres://otp:s3cr3t-pw@127.0.0.1:99999/x'),
    )
    expect(code).toBe(2)
    expect(stderr).toMatch(/OTPAUTH_DATABASE is not a valid URL/)
    expect(`${stdout}\n${stderr}`).not.toContain('s3cr3t-pw')
  })

  // BUG (reported, src/store/postgres.ts redactUrl): when the URL does not parse, the fallback
  // `value.replace(/\/\/[^@/]*@/, '//***@')` skips a password holding "/" (common in base64
  // passwords) or "@", and config.ts echoes the URL into the message main.ts prints to stderr.
  // Flip to it() once fixed.
  it.each(['postgres://otp:s3cr3t/pw@db:5432/x', 'postgres://otp:s3cr3t@pw@db:99999/x'])(
    'when the malformed URL has a password with "/" or "@" (%j), then the password stays out of stderr',
    async (url) => {
      const { code, stderr } = await runToExit(main, replicaEnv(url))
      expect(code).toBe(2)
      expect(stderr).toMatch(/OTPAUTH_DATABASE/)
      expect(stderr).not.toContain('s3cr3t')
      expect(stderr).not.toMatch(/pw@/)
    },
  )
})

describe('PostgreSQL stopped and started (private cluster)', () => {
  let server: PrivatePostgres
  let down = false
  const stop = async (): Promise<void> => {
    await stopPostgres(server)
    down = true
  }
  const start = async (): Promise<void> => {
    await startPostgres(server)
    down = false
  }

  beforeAll(async () => {
    server = await startPrivatePostgres()
  }, 60_000)
  afterAll(async () => {
    await server.destroy()
  })

  /** A new database on the private cluster; the cluster is running again when the test ends. */
  async function privateDatabase(): Promise<string> {
    const database = await createTestDatabase(server.url)
    onTestFinished(async () => {
      if (down) await start()
      await database.drop()
    })
    return database.url
  }

  it('when PostgreSQL comes up during start-up, then the replica starts within the timeout and serves', async () => {
    const url = await privateDatabase()
    await stop()

    const started = performance.now()
    const [replica] = await Promise.all([
      spawnServer(main, replicaEnv(url, { OTPAUTH_DATABASE_STARTUP_TIMEOUT_SECONDS: '20' })),
      sleep(1_500).then(start),
    ])
    const ms = performance.now() - started
    const client = new OtpAuthClient(replica.address)
    onTestFinished(() => {
      client.close()
      replica.child.kill('SIGKILL')
    })

    expect(replica.lines.some((l) => l.includes('PostgreSQL unreachable; retrying'))).toBe(true)
    expect(await health(replica.address)).toBe('SERVING')
    expect(await health(replica.address, '')).toBe('SERVING')
    const sent = await client.register({ phoneNumber: PHONES.alice })
    expect(sent.message).toBe('OTP sent to phone number')
    console.log(`PostgreSQL up 1.5 s into start-up: replica listening after ${ms.toFixed(0)} ms`)
  }, 30_000)

  it('when PostgreSQL stops while serving, then calls fail fast with UNAVAILABLE STORE_UNAVAILABLE (fail closed), health is NOT_SERVING, and all recovers when it is back', async () => {
    const guard = new UnhandledGuard()
    const url = await privateDatabase()
    const t = await startOnPostgres(url)
    const ip = '198.51.100.7'

    // Before the outage: a session, and a sign-up code waiting to be entered.
    await signUpVerified(t, PHONES.alice, 'a fine password', ip)
    const { sessionToken } = await loginWithPassword(t, PHONES.alice, 'a fine password', ip)
    await t.client.register({ phoneNumber: PHONES.bob }, t.as(ip))
    const bobCode = t.sms.lastCodeFor(PHONES.bob, 'register')
    expect(await health(t.address)).toBe('SERVING')

    await stop()
    const calls: [string, () => Promise<unknown>][] = [
      ['Register', () => t.client.register({ phoneNumber: PHONES.carol }, t.as(ip))],
      [
        'VerifyOtp (right code)',
        () => t.client.verifyOtp({ phoneNumber: PHONES.bob, code: bobCode }, t.as(ip)),
      ],
      ['ValidateSession', () => t.client.validateSession({ sessionToken }, t.as(ip))],
      ['Login', () => loginWithPassword(t, PHONES.alice, 'a fine password', ip)],
      [
        'RequestLoginCode',
        () => t.client.requestLoginCode({ phoneNumber: PHONES.alice }, t.as(ip)),
      ],
      ['Logout', () => t.client.logout({ sessionToken }, t.as(ip))],
    ]
    const report: string[] = []
    for (const [name, call] of calls) {
      const { ms, error } = await timed(call())
      report.push(
        `${name}: ${error === undefined ? 'OK' : `${status[error.code]} ${String(error.reason)}`} in ${ms.toFixed(0)} ms`,
      )
      expect(error, `${name} succeeded with the database down`).toBeDefined()
      expect([error?.code, error?.reason], name).toEqual([status.UNAVAILABLE, 'STORE_UNAVAILABLE'])
      expect(error?.domain, name).toBe('otpauth')
      expect(ms, name).toBeLessThan(2_000)
    }
    // Readiness turns NOT_SERVING; liveness ("") stays SERVING: a restart would not help.
    expect(await health(t.address, SERVICE_NAME)).toBe('NOT_SERVING')
    expect(await health(t.address, '')).toBe('SERVING')
    expect(t.logs.text).toContain('database unavailable: NOT_SERVING until it answers')

    const restarted = performance.now()
    await start()
    const serving = await waitFor(async () => (await health(t.address)) === 'SERVING', 10_000)
    const recoveryMs = performance.now() - restarted
    expect(serving, 'health SERVING within 10 s of the restart').toBe(true)
    expect(t.logs.text).toContain('database reachable again: SERVING')

    // Nothing was decided during the outage: the session and the code still work.
    const session = await t.client.validateSession({ sessionToken }, t.as(ip))
    expect(session.phoneNumber).toBe(PHONES.alice)
    await t.client.verifyOtp({ phoneNumber: PHONES.bob, code: bobCode }, t.as(ip))
    await t.client.register({ phoneNumber: PHONES.carol }, t.as(ip))
    expect(guard.seen).toEqual([])
    console.log(
      `PostgreSQL outage: ${report.join('; ')}; SERVING ${recoveryMs.toFixed(0)} ms after restart`,
    )
  }, 30_000)
})

describe('PostgreSQL connections killed by the server', () => {
  it('when every idle connection is terminated, then the replica keeps running and the next calls succeed (one UNAVAILABLE at most)', async () => {
    const guard = new UnhandledGuard()
    const url = await sharedDatabase()
    const t = await startOnPostgres(url)
    // Several connections in the pool: concurrent calls.
    await Promise.all(
      [PHONES.alice, PHONES.bob, PHONES.carol, PHONES.dave].map((phone, i) =>
        t.client.register({ phoneNumber: phone }, t.as(`198.51.100.${i + 1}`)),
      ),
    )
    const killed = await terminateConnections(url)
    expect(killed).toBeGreaterThanOrEqual(1)
    await sleep(50)
    const readinessAfterKill = await health(t.address)

    const outcomes: string[] = []
    for (const [i, phone] of [PHONES.alice, PHONES.bob, PHONES.carol, PHONES.dave].entries()) {
      const code = t.sms.lastCodeFor(phone, 'register')
      const { error } = await timed(
        t.client.verifyOtp({ phoneNumber: phone, code }, t.as(`198.51.100.${i + 1}`)),
      )
      outcomes.push(error === undefined ? 'OK' : `${status[error.code]} ${String(error.reason)}`)
    }
    const failed = outcomes.filter((o) => o !== 'OK')
    expect(failed.length, outcomes.join(', ')).toBeLessThanOrEqual(1)
    for (const f of failed) expect(f).toBe('UNAVAILABLE STORE_UNAVAILABLE')
    // Whatever health did meanwhile, it is SERVING again within a probe or two.
    expect(await waitFor(async () => (await health(t.address)) === 'SERVING', 5_000)).toBe(true)
    await t.client.register({ phoneNumber: '+4915112345679' }, t.as('198.51.100.9'))
    expect(guard.seen).toEqual([])
    console.log(
      `${killed} connections terminated; readiness just after: ${readinessAfterKill}; ` +
        `next calls: ${outcomes.join(', ')}`,
    )
  })
})

describe('PostgreSQL slow or locked', () => {
  it('when statements wait on locks past OTPAUTH_DATABASE_STATEMENT_TIMEOUT_MS, then calls are UNAVAILABLE STORE_UNAVAILABLE (not INTERNAL) soon after the timeout, and work once the locks go', async () => {
    const url = await sharedDatabase()
    const t = await startOnPostgres(url, {
      databasePool: { max: 4, connectTimeoutMs: 1_000, statementTimeoutMs: 300 },
    })
    const ip = '198.51.100.7'
    await signUpVerified(t, PHONES.alice, 'a fine password', ip)
    const { sessionToken } = await loginWithPassword(t, PHONES.alice, 'a fine password', ip)
    await t.client.register({ phoneNumber: PHONES.bob }, t.as(ip))
    const bobCode = t.sms.lastCodeFor(PHONES.bob, 'register')

    const holder = new pg.Client({ connectionString: url })
    await holder.connect()
    onTestFinished(() => holder.end())
    await holder.query(
      'begin; lock table users, sessions, codes, lockouts, number_sends, client_sends ' +
        'in access exclusive mode',
    )
    const calls = [
      ['ValidateSession', () => t.client.validateSession({ sessionToken }, t.as(ip))],
      ['Login', () => loginWithPassword(t, PHONES.alice, 'a fine password', ip)],
      ['Register', () => t.client.register({ phoneNumber: PHONES.carol }, t.as(ip))],
      ['VerifyOtp', () => t.client.verifyOtp({ phoneNumber: PHONES.bob, code: bobCode }, t.as(ip))],
    ] as const
    const report: string[] = []
    for (const [name, call] of calls) {
      const { ms, error } = await timed(call())
      report.push(
        `${name}: ${error === undefined ? 'OK' : String(error.reason)} in ${ms.toFixed(0)} ms`,
      )
      expect([error?.code, error?.reason], name).toEqual([status.UNAVAILABLE, 'STORE_UNAVAILABLE'])
      expect(ms, name).toBeLessThan(1_300)
    }
    await holder.query('rollback')

    await t.client.verifyOtp({ phoneNumber: PHONES.bob, code: bobCode }, t.as(ip))
    expect((await t.client.validateSession({ sessionToken }, t.as(ip))).phoneNumber).toBe(
      PHONES.alice,
    )
    console.log(`tables locked: ${report.join('; ')}`)
  })
})

describe('The database password in logs', () => {
  it('when the URL holds a password, then the start-up line shows it as *** and it appears nowhere in the output, even after connections are killed', async () => {
    const dbUrl = await sharedDatabase()
    const withPassword = new URL(dbUrl)
    withPassword.password = 'hunter2-pw' // trust authentication: any password is accepted
    const replica = await spawnServer(main, replicaEnv(withPassword.toString()))
    const client = new OtpAuthClient(replica.address)
    onTestFinished(() => {
      client.close()
      replica.child.kill('SIGKILL')
    })

    const listening = replica.lines.find((l) => l.includes('otpauth listening on'))
    const database = (JSON.parse(listening ?? '{}') as { database?: string }).database
    const expected = new URL(dbUrl)
    expected.password = '***'
    expect(database).toBe(expected.toString().replace('%2A%2A%2A', '***'))
    expect(database).toContain(':***@')

    await client.register({ phoneNumber: PHONES.alice })
    expect(await terminateConnections(dbUrl)).toBeGreaterThanOrEqual(1)
    await sleep(200)
    await client.register({ phoneNumber: PHONES.bob }).catch(() => undefined)
    await client.register({ phoneNumber: PHONES.carol })
    expect(replica.child.exitCode).toBeNull()

    replica.child.kill('SIGTERM')
    expect(await replica.exited).toBe(0)
    const output = `${replica.lines.join('\n')}\n${replica.stderr()}`
    expect(output).toContain('"stopped"')
    expect(output).not.toContain('hunter2-pw')
  })
})

describe('Replica consistency checks at start-up', () => {
  it('when the replica clock is an hour off the database clock, then start-up is refused naming OTPAUTH_MAX_CLOCK_SKEW_MS; with the clock right it starts', async () => {
    const url = await sharedDatabase()

    const error = await startOnPostgres(
      url,
      { maxClockSkewMs: 2_000 },
      new FakeClock(Date.now() + 3_600_000),
    ).then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(error).toBeInstanceOf(Error)
    expect((error as Error).message).toMatch(/OTPAUTH_MAX_CLOCK_SKEW_MS is 2000/)
    const skew = Number(/clock is (\d+) ms away/.exec((error as Error).message)?.[1])
    expect(skew).toBeGreaterThan(3_500_000)
    expect(skew).toBeLessThan(3_700_000)

    const behind = await startOnPostgres(
      url,
      { maxClockSkewMs: 2_000 },
      new FakeClock(Date.now() - 3_600_000),
    ).then(
      () => undefined,
      (e: unknown) => e,
    )
    expect((behind as Error).message).toMatch(/OTPAUTH_MAX_CLOCK_SKEW_MS/)

    const t = await startOnPostgres(url, { maxClockSkewMs: 2_000 }, new FakeClock(Date.now()))
    expect(await health(t.address)).toBe('SERVING')
  })

  it('when a replica brings another code key, then it is refused naming OTPAUTH_CODE_HMAC_KEY; with the old key as previous it starts and verifies codes issued under the old one', async () => {
    const url = await sharedDatabase()
    const k1 = randomBytes(32)
    const k2 = randomBytes(32)
    const clock = new FakeClock()
    const secrets = [k1, k2].flatMap((k) => [k.toString('hex'), k.toString('base64')])

    const a = await startOnPostgres(url, { codeHmacKey: k1 }, clock)
    await a.client.register({ phoneNumber: PHONES.alice, password: 'a fine password' })
    const codeFromA = a.sms.lastCodeFor(PHONES.alice, 'register')

    const refused = await startOnPostgres(url, { codeHmacKey: k2 }, clock).then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(refused).toBeInstanceOf(Error)
    const message = (refused as Error).message
    expect(message).toMatch(/OTPAUTH_CODE_HMAC_KEY differs from the keys the other replicas use/)
    expect(message).toContain('OTPAUTH_CODE_HMAC_PREVIOUS_KEY')
    for (const secret of secrets) expect(message).not.toContain(secret)

    const c = await startOnPostgres(url, { codeHmacKey: k2, codeHmacPreviousKey: k1 }, clock)
    await c.client.verifyOtp({ phoneNumber: PHONES.alice, code: codeFromA })
    const session = await loginWithPassword(c, PHONES.alice, 'a fine password', '127.0.0.1')
    expect(session.sessionToken).not.toBe('')

    const rows = await readRows(url, 'select name, value from replica_settings')
    expect(rows.map((r) => r['name'])).toEqual(
      expect.arrayContaining([`code_key:${keyFingerprint(k1)}`, `code_key:${keyFingerprint(k2)}`]),
    )
    const stored = JSON.stringify(rows)
    for (const secret of secrets) expect(stored).not.toContain(secret)

    // A key no live replica holds is refused; the old key is forgotten once nobody renewed it for
    // ten minutes (every replica renews its keys each prune round).
    const stranger = await startOnPostgres(url, { codeHmacKey: randomBytes(32) }, clock).then(
      () => undefined,
      (e: unknown) => e,
    )
    expect((stranger as Error).message).toMatch(/OTPAUTH_CODE_HMAC_KEY differs/)
    await a.app.stop()
    clock.advance(11 * 60_000)
    const d = await startOnPostgres(url, { codeHmacKey: k2 }, clock)
    expect(await health(d.address)).toBe('SERVING')
    const stale = await startOnPostgres(url, { codeHmacKey: k1 }, clock).then(
      () => undefined,
      (e: unknown) => e,
    )
    expect((stale as Error).message).toMatch(/OTPAUTH_CODE_HMAC_KEY differs/)
  })
})

describe('The embedded SQLite store', () => {
  const sqliteEnv = (file: string): Record<string, string> => ({
    OTPAUTH_ADDRESS: '127.0.0.1:0',
    OTPAUTH_DATABASE: file,
    OTPAUTH_LOG_LEVEL: 'info',
    OTPAUTH_ARGON2_MEMORY_KIB: '7168',
    OTPAUTH_ARGON2_TIME_COST: '1',
  })

  /** startOrExit runs main.js until it either listens (then kills it) or exits by itself. */
  async function startOrExit(
    env: Record<string, string>,
  ): Promise<{ listening: boolean; code: number | string; stderr: string }> {
    try {
      const replica = await spawnServer(main, env)
      replica.child.kill('SIGKILL')
      return { listening: true, code: await replica.exited, stderr: replica.stderr() }
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error)
      const exited = /^server exited \((.*?)\) before listening: ([^]*)$/.exec(message)
      if (exited === null) throw error
      const code = exited[1] ?? ''
      return {
        listening: false,
        code: /^\d+$/.test(code) ? Number(code) : code,
        stderr: exited[2] ?? '',
      }
    }
  }

  it('when a second process opens the same SQLite file, then it exits non-zero saying the database is in use and pointing at PostgreSQL; after the first is killed, a new one starts', async () => {
    const file = join(tempDir(), 'otpauth.db')
    const first = await spawnServer(main, sqliteEnv(file))
    onTestFinished(() => {
      first.child.kill('SIGKILL')
    })

    const second = await runToExit(main, sqliteEnv(file))
    expect(second.code).not.toBe(0)
    expect(typeof second.code).toBe('number')
    expect(second.stderr).toMatch(/database ".*otpauth\.db" is in use by another OtpAuth process/)
    expect(second.stderr).toMatch(/postgres:\/\//)
    // The first one still serves.
    expect(await health(first.address)).toBe('SERVING')

    first.child.kill('SIGKILL')
    expect(await first.exited).toBe('SIGKILL')
    const third = await spawnServer(main, sqliteEnv(file))
    onTestFinished(() => {
      third.child.kill('SIGKILL')
    })
    expect(await health(third.address)).toBe('SERVING')
  })

  // BUG (reported, src/store/database.ts holdProcessLock): the lock file is "<path>.lock" of the
  // path as given, so a symlink to the database file from another directory locks another file
  // and both processes serve the same database. Flip to it() once fixed.
  it('when the second process reaches the file through a symlink in another directory, then it is refused too', async () => {
    const file = join(tempDir(), 'otpauth.db')
    const first = await spawnServer(main, sqliteEnv(file))
    onTestFinished(() => {
      first.child.kill('SIGKILL')
    })
    const link = join(tempDir(), 'otpauth.db')
    symlinkSync(file, link)

    const second = await startOrExit(sqliteEnv(link))
    expect(second.listening).toBe(false)
    expect(second.stderr).toMatch(/is in use by another OtpAuth process/)
  })
})
