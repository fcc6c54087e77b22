import { createHash } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import Database from 'better-sqlite3'
import { isValidPhoneNumber } from 'libphonenumber-js/max'
import { beforeAll, describe, expect, it } from 'vitest'

// Run by `npm run test:heavy` (test/vitest.heavy.config.ts): about 30 s on an idle 2-core machine,
// 20 server start-ups being most of it.
import { OtpAuthClient, OtpAuthError } from '../src/client/otpauth-client.js'
import { buildServer, spawnServer, startSmsSink, type SmsSink } from './hostile-support.js'

const CYCLES = 20
const WORKERS = 4
const PASSWORD = 'crash test password'

let main = ''
beforeAll(() => {
  main = buildServer()
}, 120_000)

/** What clients were told succeeded: all of it must survive a SIGKILL. */
interface Acknowledged {
  registered: Set<string>
  verified: Set<string>
  sessions: { token: string; phone: string }[]
  lockedOut: Set<string>
}

/** A supply of distinct valid UK mobile numbers. */
function* phones(): Generator<string> {
  for (let n = 100_000; ; n += 1) {
    const phone = `+447911${String(n)}`
    if (isValidPhoneNumber(phone)) yield phone
  }
}

async function ok<T>(call: Promise<T>): Promise<T | undefined> {
  try {
    return await call
  } catch (error) {
    if (error instanceof OtpAuthError) return undefined
    throw error
  }
}

/** load runs sign-up, verification, login and lockout flows until stopped. */
async function load(
  worker: number,
  client: OtpAuthClient,
  sink: SmsSink,
  next: () => { phone: string; ip: string },
  acked: Acknowledged,
  stopped: () => boolean,
): Promise<void> {
  let round = 0
  while (!stopped()) {
    round += 1
    const { phone, ip } = next()
    const as = { metadata: { 'x-forwarded-for': ip }, timeoutMs: 3_000 }
    if (worker === 0 && round % 2 === 0) {
      // Three wrong logins from a fresh address: the third answer means "you are now locked".
      let last: string | undefined
      for (let i = 0; i < 3 && !stopped(); i += 1) {
        try {
          await client.login(
            { phoneNumber: phone, credential: { $case: 'password', value: 'wrong' } },
            as,
          )
        } catch (error) {
          last = error instanceof OtpAuthError ? error.reason : undefined
          if (last !== 'INVALID_CREDENTIALS') break
          if (i === 2) acked.lockedOut.add(ip)
        }
      }
      continue
    }
    if ((await ok(client.register({ phoneNumber: phone, password: PASSWORD }, as))) === undefined)
      continue
    acked.registered.add(phone)
    const code = sink.lastCode(phone)
    if ((await ok(client.verifyOtp({ phoneNumber: phone, code }, as))) === undefined) continue
    acked.verified.add(phone)
    const session = await ok(
      client.login({ phoneNumber: phone, credential: { $case: 'password', value: PASSWORD } }, as),
    )
    if (session !== undefined) acked.sessions.push({ token: session.sessionToken, phone })
  }
}

/** checkDatabase opens the file the killed server left and checks every acknowledged write. */
function checkDatabase(path: string, acked: Acknowledged): void {
  const db = new Database(path, { readonly: true })
  try {
    expect(db.pragma('integrity_check', { simple: true })).toBe('ok')
    const users = new Map(
      db
        .prepare<[], { phone: string; verified_at: number | null }>(
          'select phone, verified_at from users',
        )
        .all()
        .map((u) => [u.phone, u.verified_at]),
    )
    for (const phone of acked.registered) expect(users.has(phone), phone).toBe(true)
    for (const phone of acked.verified) expect(users.get(phone), phone).not.toBeNull()
    const session = db.prepare<[Buffer], { n: number }>(
      'select count(*) as n from sessions where token_hash = ?',
    )
    for (const { token } of acked.sessions) {
      expect(session.get(createHash('sha256').update(token).digest())?.n).toBe(1)
    }
    const lock = db.prepare<[string, number], { n: number }>(
      'select count(*) as n from lockouts where client_key = ? and locked_until > ?',
    )
    for (const ip of acked.lockedOut) expect(lock.get(ip, Date.now())?.n, ip).toBe(1)
  } finally {
    db.close()
  }
}

describe('Crash safety', () => {
  it(`when the server is SIGKILLed at random moments under load ${CYCLES} times, then every acknowledged write survives and the database is intact`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'otpauth-crash-'))
    const database = join(dir, 'otpauth.db')
    const sink = await startSmsSink()
    const env = {
      OTPAUTH_ADDRESS: '127.0.0.1:0',
      OTPAUTH_DATABASE: database,
      OTPAUTH_SMS: 'webhook',
      OTPAUTH_SMS_WEBHOOK_URL: sink.url,
      OTPAUTH_TRUSTED_PROXIES: '127.0.0.1/32',
      OTPAUTH_LOG_LEVEL: 'info',
      OTPAUTH_ARGON2_MEMORY_KIB: '7168',
      OTPAUTH_ARGON2_TIME_COST: '1',
      OTPAUTH_SMS_BUDGET_PER_PREFIX_PER_HOUR: '1000000',
    }
    const acked: Acknowledged = {
      registered: new Set(),
      verified: new Set(),
      sessions: [],
      lockedOut: new Set(),
    }
    const supply = phones()
    let ipCounter = 0
    const next = (): { phone: string; ip: string } => {
      ipCounter += 1
      return {
        phone: supply.next().value as string,
        ip: `10.${(ipCounter >> 16) & 255}.${(ipCounter >> 8) & 255}.${ipCounter & 255}`,
      }
    }

    try {
      for (let cycle = 0; cycle < CYCLES; cycle += 1) {
        const server = await spawnServer(main, env)
        const client = new OtpAuthClient(server.address, {
          channelOptions: { 'grpc.use_local_subchannel_pool': 1 },
        })
        let stopped = false
        const workers = Array.from({ length: WORKERS }, (_, w) =>
          load(w, client, sink, next, acked, () => stopped),
        )
        await sleep(150 + Math.random() * 450)
        server.child.kill('SIGKILL')
        expect(await server.exited).toBe('SIGKILL')
        stopped = true
        await Promise.all(workers)
        client.close()
        checkDatabase(database, acked)
      }

      // A last restart on the same file: the service reads what the killed ones wrote.
      const server = await spawnServer(main, env)
      const client = new OtpAuthClient(server.address)
      for (const { token, phone } of acked.sessions.slice(-20)) {
        expect((await client.validateSession({ sessionToken: token })).phoneNumber).toBe(phone)
      }
      const lockedIp = [...acked.lockedOut].at(-1)
      if (lockedIp !== undefined) {
        const err = await client
          .login(
            { phoneNumber: '+447911123456', credential: { $case: 'password', value: 'x' } },
            { metadata: { 'x-forwarded-for': lockedIp } },
          )
          .catch((e: unknown) => e as OtpAuthError)
        expect((err as OtpAuthError).reason).toBe('CLIENT_LOCKED_OUT')
      }
      client.close()
      server.child.kill('SIGTERM')
      expect(await server.exited).toBe(0)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }

    expect(acked.verified.size).toBeGreaterThan(CYCLES)
    console.log(
      `crash safety: ${CYCLES} SIGKILL cycles; acknowledged and found after the kills: ` +
        `${acked.registered.size} registrations, ${acked.verified.size} verifications, ` +
        `${acked.sessions.length} sessions, ${acked.lockedOut.size} lockouts; integrity_check ok`,
    )
  }, 120_000)
})
