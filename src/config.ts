import { isSupportedCountry, type CountryCode } from 'libphonenumber-js/max'
import { TrustedProxies } from './auth/client-address.js'
import type { SynchronousMode } from './store/database.js'
import { isPostgresUrl, redactUrl } from './store/postgres.js'

/** Config is everything start-up needs, validated and frozen. Units are in the names. */
export interface Config {
  /** host:port to listen on; port 0 picks a free port. */
  address: string
  /** host:port of the built-in REST front door (google.api.http transcoding); undefined: off. */
  httpAddress: string | undefined
  /** Largest REST request body accepted, in bytes. */
  httpMaxBodyBytes: number
  /** host:port serving Prometheus metrics at /metrics; undefined: off. */
  metricsAddress: string | undefined
  /** The embedded SQLite file (used when databaseUrl is undefined). */
  databasePath: string
  databaseSynchronous: SynchronousMode
  /** postgres:// URL of the database replicas share; undefined: the embedded SQLite file. */
  databaseUrl: string | undefined
  /** PostgreSQL connections per replica, and how long to wait for one / for a statement. */
  databasePool: { max: number; connectTimeoutMs: number; statementTimeoutMs: number }
  /** How long start-up keeps retrying an unreachable PostgreSQL before it gives up. */
  databaseStartupTimeoutSeconds: number
  /**
   * PostgreSQL: how far this replica's clock may be from the database's at start-up. Replicas
   * decide expiry, cooldowns and lockout windows by their own clocks; 0 skips the check.
   */
  maxClockSkewMs: number
  sms: { kind: 'console' } | { kind: 'webhook'; url: URL; timeoutMs: number }
  trustedProxies: readonly string[]
  defaultRegion: CountryCode | undefined
  /** HMAC key for codes; undefined means a fresh random key per process (codes live in memory). */
  codeHmacKey: Buffer | undefined
  /** The key before the last rotation: still verifies codes issued under it. */
  codeHmacPreviousKey: Buffer | undefined
  codeTtlSeconds: number
  codeMaxAttempts: number
  resendCooldownSeconds: number
  sendsPerNumberPerHour: number
  sendsPerClientPerHour: number
  lockoutThreshold: number
  lockoutSeconds: number
  numberFailureLimit: number
  sessionTtlSeconds: number
  /** How long after its login a session may change the password, the number or delete the account. */
  privilegedSessionSeconds: number
  cacheMax: number
  maxMessageBytes: number
  argon2: { memoryKib: number; timeCost: number; parallelism: number }
  hashConcurrency: number
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'
  shutdownGraceSeconds: number
  /** Pending (never verified) accounts older than this are deleted. */
  pendingRetentionSeconds: number
  /** A number's failed-login count is forgotten after this long without a failure. */
  numberFailureRetentionSeconds: number
  /** How often ended sessions, lifted lockouts and stale failures are deleted. */
  pruneIntervalSeconds: number
  /** A connection with no call for this long is closed (idle sockets cost memory and a descriptor). */
  connectionIdleSeconds: number
  /**
   * A connection is closed this long after it opened (calls then get shutdownGraceSeconds to
   * finish), so a stream that stalls half way through a message cannot hold memory forever.
   */
  connectionMaxAgeSeconds: number
}

/** ConfigError lists every invalid variable at once, each by name. */
export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`)
    this.name = 'ConfigError'
  }
}

type Env = Readonly<Record<string, string | undefined>>

/** loadConfig reads OTPAUTH_* variables, applies defaults and validates. Throws ConfigError. */
export function loadConfig(env: Env): Readonly<Config> {
  const problems: string[] = []
  const read = (name: string): string | undefined => {
    const value = env[name]?.trim()
    return value === undefined || value === '' ? undefined : value
  }
  const int = (name: string, fallback: number, min: number, max: number): number => {
    const raw = read(name)
    if (raw === undefined) return fallback
    const value = Number(raw)
    if (!/^-?\d+$/.test(raw) || !Number.isSafeInteger(value) || value < min || value > max) {
      problems.push(`${name} must be an integer from ${min} to ${max}, got "${raw}"`)
      return fallback
    }
    return value
  }
  const oneOf = <T extends string>(name: string, fallback: T, allowed: readonly T[]): T => {
    const raw = read(name)?.toLowerCase()
    if (raw === undefined) return fallback
    if (!(allowed as readonly string[]).includes(raw)) {
      problems.push(`${name} must be one of ${allowed.join(', ')}, got "${raw}"`)
      return fallback
    }
    return raw as T
  }

  const address = read('OTPAUTH_ADDRESS') ?? '0.0.0.0:50051'
  if (!/^(\[[0-9a-fA-F:.]+\]|[^\s:[\]]+):\d{1,5}$/.test(address) || portOf(address) > 65535) {
    problems.push(
      `OTPAUTH_ADDRESS must be host:port (such as 0.0.0.0:50051 or [::]:50051), got "${address}"`,
    )
  }

  const optionalAddress = (name: string): string | undefined => {
    const raw = read(name)
    if (
      raw !== undefined &&
      (!/^(\[[0-9a-fA-F:.]+\]|[^\s:[\]]+):\d{1,5}$/.test(raw) || portOf(raw) > 65535)
    ) {
      problems.push(`${name} must be host:port (such as 127.0.0.1:8080), got "${raw}"`)
    }
    return raw
  }
  const httpAddress = optionalAddress('OTPAUTH_HTTP_ADDRESS')
  const metricsAddress = optionalAddress('OTPAUTH_METRICS_ADDRESS')

  const smsKind = oneOf('OTPAUTH_SMS', 'console', ['console', 'webhook'] as const)
  const webhookTimeoutMs = int('OTPAUTH_SMS_WEBHOOK_TIMEOUT_MS', 5_000, 100, 60_000)
  let sms: Config['sms'] = { kind: 'console' }
  if (smsKind === 'webhook') {
    const raw = read('OTPAUTH_SMS_WEBHOOK_URL')
    let url: URL | undefined
    try {
      url = raw === undefined ? undefined : new URL(raw)
    } catch {
      url = undefined
    }
    if (raw === undefined) {
      problems.push('OTPAUTH_SMS_WEBHOOK_URL is required when OTPAUTH_SMS=webhook')
    } else if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
      problems.push(`OTPAUTH_SMS_WEBHOOK_URL must be an http:// or https:// URL, got "${raw}"`)
    } else {
      sms = { kind: 'webhook', url, timeoutMs: webhookTimeoutMs }
    }
  }

  const trustedProxies = (read('OTPAUTH_TRUSTED_PROXIES') ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')

  try {
    new TrustedProxies(trustedProxies)
  } catch (error) {
    problems.push(
      `OTPAUTH_TRUSTED_PROXIES must be comma-separated CIDRs: ${(error as Error).message}`,
    )
  }

  const regionRaw = read('OTPAUTH_DEFAULT_REGION')?.toUpperCase()
  let defaultRegion: CountryCode | undefined
  if (regionRaw !== undefined) {
    if (isSupportedCountry(regionRaw)) defaultRegion = regionRaw
    else
      problems.push(
        `OTPAUTH_DEFAULT_REGION must be an ISO 3166 country code such as US or GB, got "${regionRaw}"`,
      )
  }

  const key = (name: string): Buffer | undefined => {
    const raw = read(name)
    if (raw === undefined) return undefined
    const value =
      /^[0-9a-fA-F]+$/.test(raw) && raw.length % 2 === 0
        ? Buffer.from(raw, 'hex')
        : Buffer.from(raw, 'base64')
    if (value.length < 32) problems.push(`${name} must be at least 32 bytes, hex or base64 encoded`)
    return value
  }
  const codeHmacKey = key('OTPAUTH_CODE_HMAC_KEY')
  const codeHmacPreviousKey = key('OTPAUTH_CODE_HMAC_PREVIOUS_KEY')
  if (codeHmacPreviousKey !== undefined && codeHmacKey === undefined) {
    problems.push('OTPAUTH_CODE_HMAC_PREVIOUS_KEY needs OTPAUTH_CODE_HMAC_KEY (the current key)')
  }

  const database = read('OTPAUTH_DATABASE') ?? './data/otpauth.db'
  let databaseUrl: string | undefined
  if (isPostgresUrl(database)) {
    databaseUrl = database
    if (!parsesAsUrl(database)) {
      problems.push(`OTPAUTH_DATABASE is not a valid URL: "${redactUrl(database)}"`)
    }
    if (codeHmacKey === undefined) {
      problems.push(
        'OTPAUTH_CODE_HMAC_KEY is required with a postgres:// OTPAUTH_DATABASE: every replica ' +
          'must key codes alike (32+ random bytes, hex or base64: openssl rand -hex 32)',
      )
    }
  } else if (/^[a-z][a-z0-9+.-]*:\/\//i.test(database)) {
    // Never taken as a file path: that would make directories named after the URL, password included.
    problems.push(
      `OTPAUTH_DATABASE must be a file path or a postgres:// or postgresql:// URL, got a ` +
        `${database.slice(0, database.indexOf(':'))}:// URL`,
    )
  }

  const config: Config = {
    address,
    httpAddress,
    httpMaxBodyBytes: int('OTPAUTH_HTTP_MAX_BODY_BYTES', 16_384, 1024, 4 * 1024 * 1024),
    metricsAddress,
    databasePath: databaseUrl === undefined ? database : './data/otpauth.db',
    databaseUrl,
    databasePool: {
      // 10 per replica: 5 replicas fit PostgreSQL's default max_connections (100) with room left.
      max: int('OTPAUTH_DATABASE_POOL_MAX', 10, 1, 1000),
      connectTimeoutMs: int('OTPAUTH_DATABASE_CONNECT_TIMEOUT_MS', 5_000, 100, 120_000),
      statementTimeoutMs: int('OTPAUTH_DATABASE_STATEMENT_TIMEOUT_MS', 5_000, 100, 120_000),
    },
    databaseStartupTimeoutSeconds: int('OTPAUTH_DATABASE_STARTUP_TIMEOUT_SECONDS', 60, 0, 3600),
    maxClockSkewMs: int('OTPAUTH_MAX_CLOCK_SKEW_MS', 2_000, 0, 600_000),
    databaseSynchronous: oneOf('OTPAUTH_DATABASE_SYNCHRONOUS', 'normal', [
      'normal',
      'full',
    ] as const),
    sms,
    trustedProxies,
    defaultRegion,
    codeHmacKey,
    codeHmacPreviousKey,
    // ASVS 2.7.2 and NIST 800-63B: an SMS code must expire within 10 minutes.
    codeTtlSeconds: int('OTPAUTH_CODE_TTL_SECONDS', 300, 30, 600),
    codeMaxAttempts: int('OTPAUTH_CODE_MAX_ATTEMPTS', 5, 1, 10),
    resendCooldownSeconds: int('OTPAUTH_RESEND_COOLDOWN_SECONDS', 30, 0, 3600),
    sendsPerNumberPerHour: int('OTPAUTH_SENDS_PER_NUMBER_PER_HOUR', 5, 1, 100),
    sendsPerClientPerHour: int('OTPAUTH_SENDS_PER_CLIENT_PER_HOUR', 1000, 1, 1_000_000),
    lockoutThreshold: int('OTPAUTH_LOCKOUT_THRESHOLD', 3, 1, 1000),
    lockoutSeconds: int('OTPAUTH_LOCKOUT_SECONDS', 3600, 1, 7 * 86_400),
    // NIST 800-63B caps consecutive failures per account at 100.
    numberFailureLimit: int('OTPAUTH_NUMBER_FAILURE_LIMIT', 100, 1, 100),
    sessionTtlSeconds: int('OTPAUTH_SESSION_TTL_SECONDS', 86_400, 60, 90 * 86_400),
    privilegedSessionSeconds: int('OTPAUTH_PRIVILEGED_SESSION_SECONDS', 600, 10, 86_400),
    cacheMax: int('OTPAUTH_CACHE_MAX', 100_000, 100, 10_000_000),
    maxMessageBytes: int('OTPAUTH_MAX_MESSAGE_BYTES', 16_384, 1024, 4 * 1024 * 1024),
    argon2: {
      // OWASP's floor is 19 MiB with 2 passes; its cheapest equivalent row is 7 MiB with 5.
      memoryKib: int('OTPAUTH_ARGON2_MEMORY_KIB', 19_456, 7_168, 4 * 1024 * 1024),
      timeCost: int('OTPAUTH_ARGON2_TIME_COST', 2, 1, 20),
      parallelism: int('OTPAUTH_ARGON2_PARALLELISM', 1, 1, 16),
    },
    // The bench's hash curve on 2 cores (bench/README-performance.md): 2 in flight reach ~0.8 of
    // the raw argon2 rate; 1 gives up a third of it for no better ValidateSession p99, 3–4 add delay.
    hashConcurrency: int('OTPAUTH_HASH_CONCURRENCY', 2, 1, 64),
    logLevel: oneOf('OTPAUTH_LOG_LEVEL', 'info', [
      'fatal',
      'error',
      'warn',
      'info',
      'debug',
      'trace',
      'silent',
    ] as const),
    shutdownGraceSeconds: int('OTPAUTH_SHUTDOWN_GRACE_SECONDS', 10, 0, 600),
    pendingRetentionSeconds: 7 * 86_400,
    numberFailureRetentionSeconds: 30 * 86_400,
    pruneIntervalSeconds: 60,
    connectionIdleSeconds: 300,
    connectionMaxAgeSeconds: 1800,
  }
  if (problems.length > 0) throw new ConfigError(problems)
  return Object.freeze(config)
}

/** parsesAsUrl accepts what pg accepts, a host left empty for a socket (`…@/db?host=/run/…`) too. */
function parsesAsUrl(value: string): boolean {
  for (const candidate of [value, value.replace(/@\//, '@localhost/')]) {
    try {
      new URL(candidate)
      return true
    } catch {
      // try the next form
    }
  }
  return false
}

function portOf(address: string): number {
  return Number(address.slice(address.lastIndexOf(':') + 1))
}
