import { spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { status } from '@grpc/grpc-js'
import { beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import { startApp } from '../src/app.js'
import { OtpAuthClient, OtpAuthError } from '../src/client/otpauth-client.js'
import { createLogger } from '../src/log.js'
import { failure, FakeClock, PHONES, testConfig } from './harness.js'
import {
  buildServer,
  ROOT,
  runToExit,
  spawnServer,
  startSmsSink,
  UnhandledGuard,
  type SmsSink,
} from './hostile-support.js'

const TIMEOUT_MS = 300

let main = ''
beforeAll(() => {
  main = buildServer()
}, 120_000)

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'otpauth-fault-'))
  onTestFinished(() => {
    rmSync(dir, { recursive: true, force: true })
  })
  return dir
}

/** The real service with the real webhook sender, pointed at a local sink. */
async function startWithWebhook(sink: SmsSink) {
  const clock = new FakeClock()
  const app = await startApp(
    testConfig(tempDir(), {
      sms: { kind: 'webhook', url: new URL(sink.url), timeoutMs: TIMEOUT_MS },
    }),
    createLogger('silent'),
    { clock },
  )
  const client = new OtpAuthClient(`127.0.0.1:${app.port}`, {
    channelOptions: { 'grpc.use_local_subchannel_pool': 1 },
  })
  onTestFinished(async () => {
    client.close()
    await app.stop()
  })
  return { app, client, clock }
}

function activeResources(): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const r of process.getActiveResourcesInfo()) counts[r] = (counts[r] ?? 0) + 1
  return counts
}

describe('SMS webhook faults', () => {
  it('when the webhook is down, slow, failing or resetting, then Register answers within the timeout by what may have been sent, and leaves no timer or socket behind', async () => {
    const guard = new UnhandledGuard()
    const sink = await startSmsSink()
    const { client, clock } = await startWithWebhook(sink)
    // Warm up the sender (its keep-alive pool) so the baseline includes what it keeps on purpose.
    await client.register({ phoneNumber: PHONES.dave })
    await sleep(50)
    const baseline = activeResources()
    const report: Record<string, string> = {}

    // Refused (nothing went out): UNAVAILABLE, nothing charged. Unknown (the request went out and
    // no answer came): the code may be on its way, so the call is OK and the send is charged.
    const faults: [string, () => Promise<void> | void, 'refused' | 'unknown'][] = [
      ['answers 500', () => void (sink.mode = 'error500'), 'refused'],
      ['never answers', () => void (sink.mode = 'slow'), 'unknown'],
      ['resets the connection', () => void (sink.mode = 'reset'), 'unknown'],
      [
        'is down',
        async () => {
          await sink.close()
        },
        'refused',
      ],
    ]
    for (const [i, [name, inject, outcome]] of faults.entries()) {
      const phone = [PHONES.alice, PHONES.bob, PHONES.carol, '+4915112345679'][i] ?? ''
      await inject()
      const started = performance.now()
      const answer = await client.register({ phoneNumber: phone, password: 'a password!' }).then(
        () => undefined,
        (error: unknown) => {
          if (error instanceof OtpAuthError) return error
          throw error
        },
      )
      const ms = performance.now() - started
      expect(ms, name).toBeLessThan(TIMEOUT_MS + 700)

      if (outcome === 'refused') {
        if (answer === undefined) throw new Error(`${name}: expected a refusal, got OK`)
        const err = answer
        report[name] = `${status[err.code]} ${String(err.reason)} in ${ms.toFixed(0)} ms`
        expect([err.code, err.reason], name).toEqual([status.UNAVAILABLE, 'SMS_UNAVAILABLE'])
        expect(err.domain).toBe('otpauth')
        if (name !== 'is down') {
          // Not charged: with the provider back and the short delivery mark over, it is served.
          sink.mode = 'ok'
          clock.advance(err.retryDelayMs ?? 0)
          await client.register({ phoneNumber: phone, password: 'a password!' })
          expect(sink.lastCode(phone)).toMatch(/^[0-9]{6}$/)
        }
      } else {
        report[name] = `OK (outcome unknown, counted) in ${ms.toFixed(0)} ms`
        expect(answer, name).toBeUndefined()
        // Charged: the same number within the cooldown is refused.
        sink.mode = 'ok'
        const again = await failure(client.register({ phoneNumber: phone }))
        expect(again.reason, name).toBe('RESEND_TOO_SOON')
      }
    }

    await sleep(TIMEOUT_MS + 200)
    const after = activeResources()
    expect(after['Timeout'] ?? 0, JSON.stringify(after)).toBeLessThanOrEqual(
      baseline['Timeout'] ?? 0,
    )
    expect(after['TCPSocketWrap'] ?? 0, JSON.stringify(after)).toBeLessThanOrEqual(
      baseline['TCPSocketWrap'] ?? 0,
    )
    expect(guard.seen).toEqual([])
    console.log(`webhook faults: ${JSON.stringify(report)}`)
  })

  it('when 50 sends time out at once, then every call answers within the timeout (OK: the outcome is unknown, so each counts as sent) and none stays open', async () => {
    const sink = await startSmsSink()
    const { client } = await startWithWebhook(sink)
    sink.mode = 'slow'
    const started = performance.now()
    const results = await Promise.allSettled(
      Array.from({ length: 50 }, (_, i) =>
        client.register(
          { phoneNumber: `+4479111${String(23_400 + i)}` },
          { metadata: { 'x-forwarded-for': `10.1.1.${i}` } },
        ),
      ),
    )
    const ms = performance.now() - started
    expect(results.every((r) => r.status === 'fulfilled')).toBe(true)
    expect(ms).toBeLessThan(TIMEOUT_MS + 1_500)
    await sleep(100)
    expect(sink.openConnections()).toBe(0)
    console.log(`webhook timeouts: 50 concurrent sends answered in ${ms.toFixed(0)} ms`)
  })
})

describe('Database faults at start-up', () => {
  const baseEnv = (database: string): Record<string, string> => ({
    OTPAUTH_ADDRESS: '127.0.0.1:0',
    OTPAUTH_DATABASE: database,
    OTPAUTH_LOG_LEVEL: 'warn',
  })

  it('when the database cannot be created or is not a database, then start-up stops with a clear message and a non-zero exit', async () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'a-file'), 'x')
    mkdirSync(join(dir, 'a-directory.db'))
    writeFileSync(join(dir, 'garbage.db'), Buffer.alloc(8192, 0x5a))
    const cases: [string, string][] = [
      ['parent is a file', join(dir, 'a-file', 'otpauth.db')],
      ['path is a directory', join(dir, 'a-directory.db')],
      ['file is not SQLite', join(dir, 'garbage.db')],
      ['kernel file system', '/proc/otpauth.db'],
    ]
    for (const [name, database] of cases) {
      const { code, stderr } = await runToExit(main, baseEnv(database))
      expect(code, name).not.toBe(0)
      expect(typeof code, name).toBe('number')
      expect(stderr, name).toMatch(/otpauth: cannot open database/)
      expect(stderr, name).toContain(database)
    }
  })

  it('when another process holds the database locked, then start-up gives up with "database is locked" and a non-zero exit', async () => {
    const dir = tempDir()
    const database = join(dir, 'otpauth.db')
    const holder = spawn(
      process.execPath,
      [
        '-e',
        `const db = new (require('better-sqlite3'))(${JSON.stringify(database)});
         db.pragma('journal_mode = WAL'); db.exec('BEGIN EXCLUSIVE');
         process.stdout.write('locked\\n'); setInterval(() => {}, 1000);`,
      ],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] },
    )
    onTestFinished(() => {
      holder.kill('SIGKILL')
    })
    await new Promise<void>((ok) =>
      holder.stdout.once('data', () => {
        ok()
      }),
    )

    const started = performance.now()
    const { code, stderr } = await runToExit(main, baseEnv(database), 20_000)
    const ms = performance.now() - started

    expect(code).toBe(1)
    expect(stderr).toMatch(/otpauth: cannot open database .*database is locked/)
    console.log(`locked database: refused after ${ms.toFixed(0)} ms (busy timeout 5 s)`)
  }, 30_000)
})

describe('Shutdown under load', () => {
  it('when SIGTERM arrives with calls in flight, then they finish, new calls are refused and the process exits 0', async () => {
    const dir = tempDir()
    const sink = await startSmsSink()
    sink.delayMs = 700
    const server = await spawnServer(main, {
      OTPAUTH_ADDRESS: '127.0.0.1:0',
      OTPAUTH_DATABASE: join(dir, 'otpauth.db'),
      OTPAUTH_SMS: 'webhook',
      OTPAUTH_SMS_WEBHOOK_URL: sink.url,
      OTPAUTH_TRUSTED_PROXIES: '127.0.0.1/32',
      OTPAUTH_LOG_LEVEL: 'info',
      OTPAUTH_ARGON2_MEMORY_KIB: '7168',
      OTPAUTH_ARGON2_TIME_COST: '1',
    })
    const client = new OtpAuthClient(server.address, { timeoutMs: 10_000 })
    onTestFinished(() => {
      client.close()
      server.child.kill('SIGKILL')
    })
    const inFlight = Array.from({ length: 20 }, (_, i) =>
      client.register(
        { phoneNumber: `+4479111${String(23_500 + i)}`, password: 'in flight password' },
        { metadata: { 'x-forwarded-for': `10.2.0.${i}` } },
      ),
    )
    await sleep(300) // all 20 are now waiting on the (slow) SMS provider
    expect(sink.received.length).toBe(20)

    server.child.kill('SIGTERM')
    await sleep(100)
    const late = new OtpAuthClient(server.address, {
      channelOptions: { 'grpc.use_local_subchannel_pool': 1 },
    })
    const refused = await failure(
      late.register({ phoneNumber: PHONES.alice }, { timeoutMs: 2_000 }),
    )
    late.close()

    const results = await Promise.allSettled(inFlight)
    const code = await server.exited

    expect(results.map((r) => r.status)).toEqual(Array(20).fill('fulfilled'))
    expect(refused.code).toBe(status.UNAVAILABLE)
    expect(code).toBe(0)
    expect(server.lines.some((l) => l.includes('"stopped"'))).toBe(true)
    console.log(
      'shutdown: 20 calls in flight finished after SIGTERM, the late call was refused, exit 0',
    )
  }, 30_000)
})
