import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { status } from '@grpc/grpc-js'
import SQLite from 'better-sqlite3'
import pg from 'pg'
import { expect, inject, onTestFinished } from 'vitest'
import { startApp, type App } from '../src/app.js'
import type { Clock } from '../src/auth/clock.js'
import type { EmailMessage, EmailSender } from '../src/auth/email-sender.js'
import {
  SmsSendError,
  type SmsFailureKind,
  type SmsMessage,
  type SmsSender,
} from '../src/auth/sms-sender.js'
import { OtpAuthClient, OtpAuthError } from '../src/client/otpauth-client.js'
import { loadConfig, type Config } from '../src/config.js'
import { createLogger } from '../src/log.js'
import { createTestDatabase } from './postgres/test-database.js'

/** The store this run of the file uses: each rule file runs once per store (vitest.config.ts). */
export const STORE = inject('store')

/** FakeClock starts at a fixed instant and moves only when told. */
export class FakeClock implements Clock {
  #now: number
  constructor(start = Date.UTC(2026, 0, 1)) {
    this.#now = start
  }
  now(): number {
    return this.#now
  }
  advance(ms: number): void {
    this.#now += ms
  }
}

/** SmsOutbox records every message; failNext makes the next sends reject. */
export class SmsOutbox implements SmsSender {
  readonly messages: SmsMessage[] = []
  #failures = 0
  #failureKind: SmsFailureKind = 'transient'
  /** How long each accepted send takes, as a real provider's API call does (0: at once). */
  delayMs: number | (() => number) = 0

  send(message: SmsMessage): Promise<void> {
    if (this.#failures > 0) {
      this.#failures -= 1
      const kind = this.#failureKind
      return Promise.reject(new SmsSendError(kind, `SMS provider refused (test, ${kind})`))
    }
    const delay = typeof this.delayMs === 'number' ? this.delayMs : this.delayMs()
    if (delay > 0) {
      return sleep(delay).then(() => {
        this.messages.push(message)
      })
    }
    this.messages.push(message)
    return Promise.resolve()
  }

  /** failNext makes the next `count` sends fail with the given kind (and records none of them). */
  failNext(count = 1, kind: SmsFailureKind = 'transient'): void {
    this.#failures = count
    this.#failureKind = kind
  }

  sentTo(phone: string): SmsMessage[] {
    return this.messages.filter((m) => m.phone === phone)
  }

  /** lastCodeFor returns the newest code sent to the number; throws if none was. */
  lastCodeFor(phone: string, purpose?: SmsMessage['purpose']): string {
    const found = this.sentTo(phone).filter((m) => purpose === undefined || m.purpose === purpose)
    const last = found.at(-1)
    if (last === undefined) throw new Error(`no SMS was sent to ${phone}`)
    return last.code
  }
}

/** EmailOutbox records every email; failNext makes the next sends reject (transient by default). */
export class EmailOutbox implements EmailSender {
  readonly messages: EmailMessage[] = []
  #failures: Error[] = []
  /** How long each accepted send takes, as a real mail server's answer does (0: at once). */
  delayMs: number | (() => number) = 0

  send(message: EmailMessage): Promise<void> {
    const failure = this.#failures.shift()
    if (failure !== undefined) return Promise.reject(failure)
    const delay = typeof this.delayMs === 'number' ? this.delayMs : this.delayMs()
    if (delay > 0) {
      return sleep(delay).then(() => {
        this.messages.push(message)
      })
    }
    this.messages.push(message)
    return Promise.resolve()
  }

  close(): Promise<void> {
    return Promise.resolve()
  }

  failNext(count = 1, kind: SmsFailureKind = 'transient'): void {
    this.#failures = Array.from(
      { length: count },
      () => new SmsSendError(kind, `mail server refused (test, ${kind})`),
    )
  }

  sentTo(address: string): EmailMessage[] {
    return this.messages.filter((m) => m.to === address)
  }

  /** lastCodeFor returns the newest code mailed to the address; throws if none was. */
  lastCodeFor(address: string, purpose?: EmailMessage['purpose']): string {
    const found = this.sentTo(address).filter((m) => purpose === undefined || m.purpose === purpose)
    const last = found.at(-1)
    if (last === undefined) throw new Error(`no email was sent to ${address}`)
    return last.code
  }
}

/** LogCapture keeps every JSON log line the server writes. */
export class LogCapture extends Writable {
  readonly lines: string[] = []
  override _write(chunk: Buffer, _encoding: string, done: () => void): void {
    this.lines.push(
      ...chunk
        .toString()
        .split('\n')
        .filter((l) => l !== ''),
    )
    done()
  }
  get text(): string {
    return this.lines.join('\n')
  }
  entries(): Record<string, unknown>[] {
    return this.lines.map((l) => JSON.parse(l) as Record<string, unknown>)
  }
}

/**
 * testConfig is the production default with test-friendly edges: a free loopback port, a temp
 * SQLite file, loopback as trusted proxy (so tests choose client addresses via x-forwarded-for)
 * and argon2 at a lower (still real) cost.
 */
export function testConfig(dir: string, overrides: Partial<Config> = {}): Config {
  return {
    ...loadConfig({}),
    address: '127.0.0.1:0',
    databasePath: join(dir, 'otpauth.db'),
    trustedProxies: ['127.0.0.1/32', '::1/128'],
    argon2: { memoryKib: 1024, timeCost: 1, parallelism: 1 },
    // Tests send many codes to few prefixes; the budgets have their own tests (sms-budget*).
    smsBudgets: {
      globalPerDay: 10_000_000,
      perCountryPerDay: 10_000_000,
      perPrefixPerHour: 10_000_000,
      prefixDigits: 5,
    },
    shutdownGraceSeconds: 2,
    ...overrides,
  }
}

export interface TestServer {
  app: App
  client: OtpAuthClient
  address: string
  clock: FakeClock
  sms: SmsOutbox
  email: EmailOutbox
  logs: LogCapture
  config: Config
  dir: string
  /** as returns call settings that make the call come from the given client address. */
  as(ip: string): { metadata: Record<string, string> }
  /** restart stops the server and starts a new one on the same database file. */
  restart(): Promise<TestServer>
}

export interface StartOptions {
  config?: Partial<Config>
  clock?: FakeClock
  dir?: string
  randomInt?: (max: number) => number
  /** Which recent send the no-send paths replay: 0 the oldest kept, just under 1 the newest. */
  random?: () => number
  /** PostgreSQL: the database to use (restart keeps it); by default a new one per server. */
  databaseUrl?: string
}

// Replicas on PostgreSQL must share the code key; tests use this one.
export const TEST_CODE_KEY = Buffer.alloc(32, 7)

/**
 * storeConfig points the service at the store of this run: the temp SQLite file, or (on
 * PostgreSQL) the given database, or a new one dropped when the test ends.
 */
export async function storeConfig(databaseUrl?: string): Promise<Partial<Config>> {
  if (STORE === 'sqlite') return {}
  let url = databaseUrl
  if (url === undefined) {
    const database = await createTestDatabase()
    onTestFinished(() => database.drop())
    url = database.url
  }
  // The fake clock is far from the database's: the skew check is tested on its own.
  return { databaseUrl: url, codeHmacKey: TEST_CODE_KEY, maxClockSkewMs: 0 }
}

/** startTestServer runs the real service on 127.0.0.1:0 and stops it when the test ends. */
export async function startTestServer(options: StartOptions = {}): Promise<TestServer> {
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'otpauth-test-'))
  const ownsDir = options.dir === undefined
  const clock = options.clock ?? new FakeClock()
  const sms = new SmsOutbox()
  const email = new EmailOutbox()
  const logs = new LogCapture()
  const fromStore = await storeConfig(options.databaseUrl)
  const config = testConfig(dir, { ...fromStore, ...options.config })
  const app = await startApp(config, createLogger('info', logs), {
    clock,
    sms,
    email,
    ...(options.randomInt === undefined ? {} : { randomInt: options.randomInt }),
    ...(options.random === undefined ? {} : { random: options.random }),
  })
  const address = `127.0.0.1:${app.port}`
  const client = new OtpAuthClient(address, {
    channelOptions: { 'grpc.use_local_subchannel_pool': 1 },
  })
  let stopped = false
  const stop = async (): Promise<void> => {
    if (stopped) return
    stopped = true
    client.close()
    await app.stop()
  }
  onTestFinished(async () => {
    await stop()
    if (ownsDir) rmSync(dir, { recursive: true, force: true })
  })
  return {
    app,
    client,
    address,
    clock,
    sms,
    email,
    logs,
    config,
    dir,
    as: (ip) => ({ metadata: { 'x-forwarded-for': ip } }),
    restart: async () => {
      await stop()
      return startTestServer({
        ...options,
        clock,
        dir,
        ...(config.databaseUrl === undefined ? {} : { databaseUrl: config.databaseUrl }),
      })
    },
  }
}

/**
 * queryRow reads the first row of a query from the server's database, whichever store it is
 * (counts come back as numbers on both).
 */
export async function queryRow(t: TestServer, text: string): Promise<Record<string, unknown>> {
  const url = t.config.databaseUrl
  if (url === undefined) {
    const db = new SQLite(join(t.dir, 'otpauth.db'), { readonly: true })
    try {
      return (db.prepare(text).get() ?? {}) as Record<string, unknown>
    } finally {
      db.close()
    }
  }
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    const { rows } = await client.query<Record<string, unknown>>(text)
    const row = rows[0] ?? {}
    return Object.fromEntries(
      Object.entries(row).map(([k, v]) => [
        k,
        typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v,
      ]),
    )
  } finally {
    await client.end()
  }
}

/** failure awaits a call that must fail and returns its decoded error. */
export async function failure(call: Promise<unknown>): Promise<OtpAuthError> {
  try {
    await call
  } catch (error) {
    if (error instanceof OtpAuthError) return error
    throw error
  }
  throw new Error('expected the call to fail, but it succeeded')
}

/** expectFailure checks a failure's status code, its ErrorInfo reason and the domain 'otpauth'. */
export function expectFailure(err: OtpAuthError, code: status, reason: string): void {
  expect(err.code).toBe(code)
  expect(err.reason).toBe(reason)
  expect(err.domain).toBe('otpauth')
}

/** expectSessionInvalid: UNAUTHENTICATED SESSION_INVALID (a token unknown, expired or ended). */
export function expectSessionInvalid(err: OtpAuthError): void {
  expectFailure(err, status.UNAUTHENTICATED, 'SESSION_INVALID')
}

/** expectInvalidCredentials: UNAUTHENTICATED INVALID_CREDENTIALS (wrong password or code). */
export function expectInvalidCredentials(err: OtpAuthError): void {
  expectFailure(err, status.UNAUTHENTICATED, 'INVALID_CREDENTIALS')
}

/** Valid numbers (libphonenumber full metadata) for tests. */
export const PHONES = {
  alice: '+14155552671',
  bob: '+14155552672',
  carol: '+447911123456',
  dave: '+4915112345678',
} as const

/** signUpVerified registers and verifies a number; throws if any step fails. */
export async function signUpVerified(
  t: TestServer,
  phone: string,
  password?: string,
  ip = '198.51.100.200',
): Promise<void> {
  await t.client.register(
    password === undefined ? { phoneNumber: phone } : { phoneNumber: phone, password },
    t.as(ip),
  )
  const code = t.sms.lastCodeFor(phone, 'register')
  await t.client.verifyOtp({ phoneNumber: phone, code }, t.as(ip))
}

/** loginWithPassword logs in with a password from the given client address. */
export function loginWithPassword(
  t: TestServer,
  phone: string,
  password: string,
  ip: string,
): ReturnType<OtpAuthClient['login']> {
  return t.client.login(
    { phoneNumber: phone, credential: { $case: 'password', value: password } },
    t.as(ip),
  )
}

/** loginWithCode logs in with a one-time code from the given client address. */
export function loginWithCode(
  t: TestServer,
  phone: string,
  code: string,
  ip: string,
): ReturnType<OtpAuthClient['login']> {
  return t.client.login(
    { phoneNumber: phone, credential: { $case: 'code', value: code } },
    t.as(ip),
  )
}

/**
 * timePairs times `call` once for each side per round, after `warmUp` untimed rounds: sides take
 * turns, and which goes first alternates too, so neither side always follows the other. Each side
 * cycles through its numbers. Returns each side's latencies in ms.
 */
export async function timePairs(
  sides: readonly [readonly string[], readonly string[]],
  call: (phone: string) => Promise<unknown>,
  { pairs, warmUp }: { pairs: number; warmUp: number },
): Promise<[number[], number[]]> {
  const times: [number[], number[]] = [[], []]
  for (let i = 0; i < warmUp + pairs; i += 1) {
    const order = Math.floor(i / 2) % 2 === 0 ? [0, 1] : [1, 0]
    for (const side of order) {
      const numbers = sides[side] ?? []
      const phone = numbers[i % numbers.length] ?? ''
      const started = performance.now()
      await call(phone)
      if (i >= warmUp) times[side]?.push(performance.now() - started)
    }
  }
  return times
}

/** wrong returns a code that is well formed but not the one sent. */
export function wrong(code: string): string {
  return ((Number(code) + 1) % 1_000_000).toString().padStart(6, '0')
}

/** The RPCs of otpauth.v1.OtpAuth, in proto order. */
export const OTPAUTH_RPCS = [
  'Register',
  'VerifyOtp',
  'RequestLoginCode',
  'Login',
  'ValidateSession',
  'Logout',
  'ChangePassword',
  'ListSessions',
  'RevokeSession',
  'RequestPhoneChange',
  'ChangePhoneNumber',
  'DeleteAccount',
  'AddEmail',
  'VerifyEmail',
] as const

/** visible is everything a caller can see of a failure, for comparing two answers. */
export function visible(err: OtpAuthError): unknown {
  return {
    code: err.code,
    message: err.message,
    reason: err.reason,
    domain: err.domain,
    metadata: err.errorMetadata,
    retry: err.retryDelayMs,
    violations: err.violations,
    details: err.details?.details.map((d) => d.typeUrl),
  }
}

// Timing statistics, for the tests whose point is a latency distribution (no-send paths paced
// like real sends).

/** mulberry32: a small seeded PRNG, so the simulated provider latencies are the same every run. */
export function seeded(seed: number): () => number {
  let a = seed
  return () => {
    a = (a + 0x6d2b79f5) | 0
    let r = Math.imul(a ^ (a >>> 15), 1 | a)
    r = (r + Math.imul(r ^ (r >>> 7), 61 | r)) ^ r
    return ((r ^ (r >>> 14)) >>> 0) / 4_294_967_296
  }
}

/** A log-normal provider latency: median `medianMs`, spread `sigma` (natural log). */
export function providerLatency(
  random: () => number,
  medianMs: number,
  sigma: number,
): () => number {
  return () => {
    // Box–Muller on two uniforms in (0, 1].
    const z = Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random())
    return medianMs * Math.exp(sigma * z)
  }
}

/** median of a sample (the mean of the middle two for an even count). */
export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b)
  const mid = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2
}

/** ksDistance is the two-sample Kolmogorov–Smirnov statistic: the largest gap between the ECDFs. */
export function ksDistance(a: readonly number[], b: readonly number[]): number {
  const xs = [...a].sort((p, q) => p - q)
  const ys = [...b].sort((p, q) => p - q)
  let i = 0
  let j = 0
  let d = 0
  while (i < xs.length && j < ys.length) {
    const x = xs[i] as number
    const y = ys[j] as number
    const v = Math.min(x, y)
    while (i < xs.length && (xs[i] as number) <= v) i += 1
    while (j < ys.length && (ys[j] as number) <= v) j += 1
    d = Math.max(d, Math.abs(i / xs.length - j / ys.length))
  }
  return d
}

/** quantiles prints a latency sample as p10 / p25 / p50 / p75 / p90, for test output. */
export function quantiles(values: readonly number[]): string {
  const s = [...values].sort((a, b) => a - b)
  const q = (p: number) =>
    (s[Math.min(s.length - 1, Math.floor(p * s.length))] as number).toFixed(1)
  return `p10 ${q(0.1)} / p25 ${q(0.25)} / p50 ${q(0.5)} / p75 ${q(0.75)} / p90 ${q(0.9)} ms`
}
