import { isSupportedCountry, type CountryCode } from 'libphonenumber-js/max'
import { TrustedProxies } from './auth/client-address.js'
import { DEFAULT_TEMPLATES, type MessagesOptions } from './auth/messages.js'
import { parsePhone } from './auth/phone.js'
import type { SynchronousMode } from './store/database.js'
import { isPostgresUrl, redactUrl } from './store/database-url.js'

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
  sms: SmsConfig
  email: EmailConfig
  /** Countries whose numbers may be sent codes; undefined: all. */
  smsAllowedCountries: ReadonlySet<CountryCode> | undefined
  smsBudgets: SmsBudgets
  /** Numbers that never reach a provider and always get their fixed code (E.164 → code). */
  testNumbers: ReadonlyMap<string, string>
  messages: MessagesConfig
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

export type SmsConfig =
  | { kind: 'console' }
  | {
      kind: 'webhook'
      url: URL
      timeoutMs: number
      /** Standard Webhooks signing key (the bytes after `whsec_`); undefined: unsigned. */
      secret?: Buffer | undefined
    }
  | {
      kind: 'twilio'
      /** https://api.twilio.com, or a fake in tests. */
      apiUrl: URL
      accountSid: string
      /** HTTP Basic credentials: the account SID and auth token, or an API key SID and secret. */
      username: string
      password: string
      sender: { from: string } | { messagingServiceSid: string }
      timeoutMs: number
    }

export type EmailConfig =
  | { kind: 'console'; from: string }
  | {
      kind: 'smtp'
      /** smtp:// or smtps:// with the credentials in it; never logged (see redactUrl). */
      url: URL
      from: string
      timeoutMs: number
    }

/** Ceilings on SMS spend, shared by all replicas (SMS pumping defence). Windows are UTC. */
export interface SmsBudgets {
  globalPerDay: number
  perCountryPerDay: number
  perPrefixPerHour: number
  /** Digits of the national number that, with the country code, make a prefix. */
  prefixDigits: number
}

export type MessagesConfig = MessagesOptions

/**
 * KNOWN_VARIABLES is every variable the service reads, and the only names loadConfig can read:
 * its reader takes a VariableName, so reading a name missing here does not compile. Start-up
 * refuses any other OTPAUTH_ variable (a typo, or a setting of another version) instead of
 * ignoring it.
 */
export const KNOWN_VARIABLES = [
  'OTPAUTH_ADDRESS',
  'OTPAUTH_HTTP_ADDRESS',
  'OTPAUTH_HTTP_MAX_BODY_BYTES',
  'OTPAUTH_METRICS_ADDRESS',
  'OTPAUTH_DATABASE',
  'OTPAUTH_DATABASE_SYNCHRONOUS',
  'OTPAUTH_DATABASE_POOL_MAX',
  'OTPAUTH_DATABASE_CONNECT_TIMEOUT_MS',
  'OTPAUTH_DATABASE_STATEMENT_TIMEOUT_MS',
  'OTPAUTH_DATABASE_STARTUP_TIMEOUT_SECONDS',
  'OTPAUTH_MAX_CLOCK_SKEW_MS',
  'OTPAUTH_SMS',
  'OTPAUTH_SMS_WEBHOOK_URL',
  'OTPAUTH_SMS_WEBHOOK_TIMEOUT_MS',
  'OTPAUTH_SMS_WEBHOOK_SECRET',
  'OTPAUTH_TWILIO_ACCOUNT_SID',
  'OTPAUTH_TWILIO_AUTH_TOKEN',
  'OTPAUTH_TWILIO_API_KEY_SID',
  'OTPAUTH_TWILIO_API_KEY_SECRET',
  'OTPAUTH_TWILIO_FROM',
  'OTPAUTH_TWILIO_MESSAGING_SERVICE_SID',
  'OTPAUTH_TWILIO_API_URL',
  'OTPAUTH_TWILIO_TIMEOUT_MS',
  'OTPAUTH_EMAIL',
  'OTPAUTH_EMAIL_FROM',
  'OTPAUTH_SMTP_URL',
  'OTPAUTH_SMTP_TIMEOUT_MS',
  'OTPAUTH_SMS_ALLOWED_COUNTRIES',
  'OTPAUTH_SMS_BUDGET_PER_DAY',
  'OTPAUTH_SMS_BUDGET_PER_COUNTRY_PER_DAY',
  'OTPAUTH_SMS_BUDGET_PER_PREFIX_PER_HOUR',
  'OTPAUTH_SMS_BUDGET_PREFIX_DIGITS',
  'OTPAUTH_TEST_NUMBERS',
  'OTPAUTH_APP_NAME',
  'OTPAUTH_TEMPLATE_REGISTER',
  'OTPAUTH_TEMPLATE_LOGIN',
  'OTPAUTH_TEMPLATE_PHONE_CHANGE',
  'OTPAUTH_TEMPLATE_EMAIL_VERIFY',
  'OTPAUTH_WEBOTP_DOMAIN',
  'OTPAUTH_TRUSTED_PROXIES',
  'OTPAUTH_DEFAULT_REGION',
  'OTPAUTH_CODE_HMAC_KEY',
  'OTPAUTH_CODE_HMAC_PREVIOUS_KEY',
  'OTPAUTH_CODE_TTL_SECONDS',
  'OTPAUTH_CODE_MAX_ATTEMPTS',
  'OTPAUTH_RESEND_COOLDOWN_SECONDS',
  'OTPAUTH_SENDS_PER_NUMBER_PER_HOUR',
  'OTPAUTH_SENDS_PER_CLIENT_PER_HOUR',
  'OTPAUTH_LOCKOUT_THRESHOLD',
  'OTPAUTH_LOCKOUT_SECONDS',
  'OTPAUTH_NUMBER_FAILURE_LIMIT',
  'OTPAUTH_SESSION_TTL_SECONDS',
  'OTPAUTH_PRIVILEGED_SESSION_SECONDS',
  'OTPAUTH_CACHE_MAX',
  'OTPAUTH_MAX_MESSAGE_BYTES',
  'OTPAUTH_ARGON2_MEMORY_KIB',
  'OTPAUTH_ARGON2_TIME_COST',
  'OTPAUTH_ARGON2_PARALLELISM',
  'OTPAUTH_HASH_CONCURRENCY',
  'OTPAUTH_LOG_LEVEL',
  'OTPAUTH_SHUTDOWN_GRACE_SECONDS',
] as const

export type VariableName = (typeof KNOWN_VARIABLES)[number]

/**
 * Variables read by the tools around the service (the test suite), never by the service itself.
 * They are allowed in its environment because `npm test` and `npm start` may share a shell.
 */
export const TOOL_VARIABLES = ['OTPAUTH_TEST_DATABASE_URL'] as const

/** ConfigError lists every invalid variable at once, each by name. */
export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`)
    this.name = 'ConfigError'
  }
}

type Env = Readonly<Record<string, string | undefined>>

/**
 * loadConfig reads the OTPAUTH_ variables, applies defaults and validates; an OTPAUTH_ variable it
 * does not know is a problem too. Throws ConfigError.
 */
export function loadConfig(env: Env): Readonly<Config> {
  const problems: string[] = unknownVariables(env)
  const read = (name: VariableName): string | undefined => {
    const value = env[name]?.trim()
    return value === undefined || value === '' ? undefined : value
  }
  const int = (name: VariableName, fallback: number, min: number, max: number): number => {
    const raw = read(name)
    if (raw === undefined) return fallback
    const value = Number(raw)
    if (!/^-?\d+$/.test(raw) || !Number.isSafeInteger(value) || value < min || value > max) {
      problems.push(`${name} must be an integer from ${min} to ${max}, got "${raw}"`)
      return fallback
    }
    return value
  }
  const oneOf = <T extends string>(name: VariableName, fallback: T, allowed: readonly T[]): T => {
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

  const optionalAddress = (name: VariableName): string | undefined => {
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

  /** httpUrl reads an http(s) URL; `required` names the setting that needs it. */
  const httpUrl = (name: VariableName, required: string | undefined): URL | undefined => {
    const raw = read(name)
    if (raw === undefined) {
      if (required !== undefined) problems.push(`${name} is required when ${required}`)
      return undefined
    }
    const url = tryUrl(raw)
    if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
      problems.push(`${name} must be an http:// or https:// URL, got "${redactUrl(raw)}"`)
      return undefined
    }
    return url
  }

  const smsKind: SmsConfig['kind'] = oneOf('OTPAUTH_SMS', 'console', [
    'console',
    'webhook',
    'twilio',
  ] as const)
  const webhookTimeoutMs = int('OTPAUTH_SMS_WEBHOOK_TIMEOUT_MS', 5_000, 100, 60_000)
  const webhookSecretRaw = read('OTPAUTH_SMS_WEBHOOK_SECRET')
  let webhookSecret: Buffer | undefined
  if (webhookSecretRaw !== undefined) {
    const body = webhookSecretRaw.startsWith('whsec_') ? webhookSecretRaw.slice(6) : ''
    const bytes = Buffer.from(body, 'base64')
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(body) || bytes.length < 24 || bytes.length > 64) {
      problems.push(
        'OTPAUTH_SMS_WEBHOOK_SECRET must be whsec_ followed by base64 of 24 to 64 random bytes ' +
          '(Standard Webhooks): whsec_$(openssl rand -base64 32)',
      )
    } else webhookSecret = bytes
  }
  const twilioTimeoutMs = int('OTPAUTH_TWILIO_TIMEOUT_MS', 10_000, 100, 60_000)
  let sms: Config['sms'] = { kind: 'console' }
  if (smsKind === 'webhook') {
    const url = httpUrl('OTPAUTH_SMS_WEBHOOK_URL', 'OTPAUTH_SMS=webhook')
    if (url !== undefined) {
      sms = { kind: 'webhook', url, timeoutMs: webhookTimeoutMs, secret: webhookSecret }
    }
  } else if (smsKind === 'twilio') {
    const twilio = twilioConfig(read, problems, twilioTimeoutMs)
    const apiUrl =
      read('OTPAUTH_TWILIO_API_URL') === undefined
        ? new URL('https://api.twilio.com')
        : httpUrl('OTPAUTH_TWILIO_API_URL', undefined)
    // Basic credentials travel with every request: in the clear only to this machine (a test fake).
    const loopback = ['127.0.0.1', 'localhost', '[::1]'].includes(apiUrl?.hostname ?? '')
    if (apiUrl?.protocol === 'http:' && !loopback) {
      problems.push('OTPAUTH_TWILIO_API_URL must be https:// (http:// only for a loopback host)')
    } else if (twilio !== undefined && apiUrl !== undefined) sms = { ...twilio, apiUrl }
  }

  const emailKind = oneOf('OTPAUTH_EMAIL', 'console', ['console', 'smtp'] as const)
  const emailFrom = read('OTPAUTH_EMAIL_FROM')
  if (emailFrom !== undefined && !/^[^\r\n]*<?[^\s@<>]+@[^\s@<>]+>?$/.test(emailFrom)) {
    problems.push(
      `OTPAUTH_EMAIL_FROM must be an address, optionally with a name ("App <no-reply@example.com>"), got "${emailFrom}"`,
    )
  }
  const smtpTimeoutMs = int('OTPAUTH_SMTP_TIMEOUT_MS', 10_000, 100, 120_000)
  let email: Config['email'] = {
    kind: 'console',
    from: emailFrom ?? 'OtpAuth <no-reply@localhost>',
  }
  if (emailKind === 'smtp') {
    const raw = read('OTPAUTH_SMTP_URL')
    const url = raw === undefined ? undefined : tryUrl(raw)
    if (raw === undefined) problems.push('OTPAUTH_SMTP_URL is required when OTPAUTH_EMAIL=smtp')
    else if (url === undefined || (url.protocol !== 'smtp:' && url.protocol !== 'smtps:')) {
      problems.push(`OTPAUTH_SMTP_URL must be an smtp:// or smtps:// URL, got "${redactUrl(raw)}"`)
    }
    if (emailFrom === undefined) {
      problems.push('OTPAUTH_EMAIL_FROM is required when OTPAUTH_EMAIL=smtp')
    }
    if (url !== undefined && emailFrom !== undefined) {
      email = { kind: 'smtp', url, from: emailFrom, timeoutMs: smtpTimeoutMs }
    }
  }

  const countriesRaw = read('OTPAUTH_SMS_ALLOWED_COUNTRIES')
  let smsAllowedCountries: Set<CountryCode> | undefined
  if (countriesRaw !== undefined) {
    smsAllowedCountries = new Set()
    for (const code of countriesRaw.split(',').map((c) => c.trim().toUpperCase())) {
      if (code === '') continue
      if (isSupportedCountry(code)) smsAllowedCountries.add(code)
      else {
        problems.push(
          `OTPAUTH_SMS_ALLOWED_COUNTRIES must be comma-separated ISO 3166 codes such as US,GB,DE; "${code}" is not one`,
        )
      }
    }
  }

  const testNumbers = new Map<string, string>()
  for (const entry of (read('OTPAUTH_TEST_NUMBERS') ?? '').split(',')) {
    if (entry.trim() === '') continue
    const [number = '', code = '', ...rest] = entry.split('=').map((p) => p.trim())
    let phone: string | undefined
    try {
      phone = parsePhone(number, undefined)
    } catch {
      phone = undefined
    }
    if (phone === undefined || !/^\d{6}$/.test(code) || rest.length > 0) {
      problems.push(
        `OTPAUTH_TEST_NUMBERS must be comma-separated +E164=123456 pairs; "${entry.trim()}" is not one`,
      )
    } else testNumbers.set(phone, code)
  }

  const template = (name: VariableName, fallback: string): string => {
    const raw = read(name)
    if (raw === undefined) return fallback
    if (!raw.includes('{code}') || raw.length > 300) {
      problems.push(`${name} must contain {code} and be at most 300 characters`)
      return fallback
    }
    return raw
  }
  const appName = read('OTPAUTH_APP_NAME') ?? 'OtpAuth'
  if (appName.length > 40 || /[\r\n]/.test(appName)) {
    problems.push('OTPAUTH_APP_NAME must be one line of at most 40 characters')
  }
  const webOtpDomain = read('OTPAUTH_WEBOTP_DOMAIN')?.toLowerCase()
  if (
    webOtpDomain !== undefined &&
    !/^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/.test(webOtpDomain)
  ) {
    problems.push(
      `OTPAUTH_WEBOTP_DOMAIN must be a host name such as example.com, got "${webOtpDomain}"`,
    )
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

  const key = (name: VariableName): Buffer | undefined => {
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
    email,
    smsAllowedCountries,
    smsBudgets: {
      globalPerDay: int('OTPAUTH_SMS_BUDGET_PER_DAY', 20_000, 1, 100_000_000),
      perCountryPerDay: int('OTPAUTH_SMS_BUDGET_PER_COUNTRY_PER_DAY', 5_000, 1, 100_000_000),
      perPrefixPerHour: int('OTPAUTH_SMS_BUDGET_PER_PREFIX_PER_HOUR', 100, 1, 10_000_000),
      prefixDigits: int('OTPAUTH_SMS_BUDGET_PREFIX_DIGITS', 5, 1, 12),
    },
    testNumbers,
    messages: {
      appName,
      templates: {
        register: template('OTPAUTH_TEMPLATE_REGISTER', DEFAULT_TEMPLATES.register),
        login: template('OTPAUTH_TEMPLATE_LOGIN', DEFAULT_TEMPLATES.login),
        phone_change: template('OTPAUTH_TEMPLATE_PHONE_CHANGE', DEFAULT_TEMPLATES.phone_change),
        email_verify: template('OTPAUTH_TEMPLATE_EMAIL_VERIFY', DEFAULT_TEMPLATES.email_verify),
      },
      webOtpDomain,
    },
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
    // Under 1 KiB per cached number (test/memory-bound.test.ts): at 50 000 the caches hold about
    // 40 MB, and RSS stays near 220 MB with V8's old space capped at 128-160 MB (README, Memory).
    // At least the default daily SMS budget (20 000), so the prefix budget stays exact.
    cacheMax: int('OTPAUTH_CACHE_MAX', 50_000, 100, 10_000_000),
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

/**
 * unknownVariables names every OTPAUTH_ variable in env that is neither a setting nor a tool's
 * (any letter case: a lower-case name is ignored as surely as a misspelt one), with the closest
 * setting when one is close. Never the value: it may be a secret under a misspelt name.
 */
function unknownVariables(env: Env): string[] {
  const allowed: readonly string[] = [...KNOWN_VARIABLES, ...TOOL_VARIABLES]
  const problems: string[] = []
  for (const name of Object.keys(env).sort()) {
    if (!name.toUpperCase().startsWith('OTPAUTH_') || allowed.includes(name)) continue
    const closest = closestVariable(name)
    problems.push(
      closest === undefined
        ? `${name} is not a setting of this version; remove it or correct its name (the README lists every setting)`
        : `${name} is not a setting; did you mean ${closest}?`,
    )
  }
  return problems
}

/**
 * closestVariable is the known name nearest to `name` by edit distance, when it is near enough to
 * be a slip: at most 2 edits, or a third of the part after OTPAUTH_ for longer names (a word left
 * out, such as PER_).
 */
function closestVariable(name: string): VariableName | undefined {
  const upper = name.toUpperCase()
  let closest: VariableName | undefined
  let closestDistance = Number.POSITIVE_INFINITY
  for (const known of KNOWN_VARIABLES) {
    const distance = editDistance(upper, known)
    if (distance < closestDistance) {
      closest = known
      closestDistance = distance
    }
  }
  const length = upper.length - 'OTPAUTH_'.length
  return closestDistance <= Math.max(2, Math.floor(length / 3)) ? closest : undefined
}

/** editDistance is the Levenshtein distance: single-character insertions, deletions, substitutions. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const current = [i]
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1)
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution))
    }
    previous = current
  }
  return previous[b.length] ?? 0
}

function tryUrl(raw: string): URL | undefined {
  try {
    return new URL(raw)
  } catch {
    return undefined
  }
}

/** twilioConfig reads the Twilio credentials and sender; undefined (with problems) when incomplete. */
function twilioConfig(
  read: (name: VariableName) => string | undefined,
  problems: string[],
  timeoutMs: number,
): Omit<Extract<SmsConfig, { kind: 'twilio' }>, 'apiUrl'> | undefined {
  const before = problems.length
  const accountSid = read('OTPAUTH_TWILIO_ACCOUNT_SID')
  if (accountSid === undefined || !/^AC[0-9a-fA-F]{32}$/.test(accountSid)) {
    problems.push(
      'OTPAUTH_TWILIO_ACCOUNT_SID must be your account SID (AC followed by 32 hex digits)',
    )
  }
  const authToken = read('OTPAUTH_TWILIO_AUTH_TOKEN')
  const keySid = read('OTPAUTH_TWILIO_API_KEY_SID')
  const keySecret = read('OTPAUTH_TWILIO_API_KEY_SECRET')
  let username = accountSid ?? ''
  let password = authToken ?? ''
  if (keySid !== undefined || keySecret !== undefined) {
    if (authToken !== undefined) {
      problems.push(
        'OTPAUTH_TWILIO_AUTH_TOKEN and OTPAUTH_TWILIO_API_KEY_SID/_SECRET are alternatives; set one',
      )
    } else if (
      keySid === undefined ||
      !/^SK[0-9a-fA-F]{32}$/.test(keySid) ||
      keySecret === undefined
    ) {
      problems.push(
        'OTPAUTH_TWILIO_API_KEY_SID (SK followed by 32 hex digits) and OTPAUTH_TWILIO_API_KEY_SECRET go together',
      )
    } else {
      username = keySid
      password = keySecret
    }
  } else if (authToken === undefined) {
    problems.push(
      'OTPAUTH_TWILIO_AUTH_TOKEN (or OTPAUTH_TWILIO_API_KEY_SID and _SECRET) is required when OTPAUTH_SMS=twilio',
    )
  }
  const from = read('OTPAUTH_TWILIO_FROM')
  const messagingServiceSid = read('OTPAUTH_TWILIO_MESSAGING_SERVICE_SID')
  let sender: { from: string } | { messagingServiceSid: string } | undefined
  if ((from === undefined) === (messagingServiceSid === undefined)) {
    problems.push(
      'exactly one of OTPAUTH_TWILIO_FROM and OTPAUTH_TWILIO_MESSAGING_SERVICE_SID is required when OTPAUTH_SMS=twilio',
    )
  } else if (messagingServiceSid !== undefined) {
    if (!/^MG[0-9a-fA-F]{32}$/.test(messagingServiceSid)) {
      problems.push('OTPAUTH_TWILIO_MESSAGING_SERVICE_SID must be MG followed by 32 hex digits')
    } else sender = { messagingServiceSid }
  } else if (from !== undefined) {
    // An E.164 number, or an alphanumeric sender ID (up to 11 characters, at least one letter).
    if (!/^\+[1-9]\d{6,14}$/.test(from) && !/^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$/.test(from)) {
      problems.push(
        'OTPAUTH_TWILIO_FROM must be an E.164 number or an alphanumeric sender ID of up to 11 characters',
      )
    } else sender = { from }
  }
  if (problems.length > before || accountSid === undefined || sender === undefined) return undefined
  return { kind: 'twilio', accountSid, username, password, sender, timeoutMs }
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
