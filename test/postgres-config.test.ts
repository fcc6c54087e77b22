/**
 * loadConfig and the PostgreSQL variables: which OTPAUTH_DATABASE values mean PostgreSQL, what
 * PostgreSQL requires (a shared code key), and the pool and timeout settings. Messages name the
 * variable to fix and never repeat a password.
 */
import { describe, expect, it } from 'vitest'
import { ConfigError, loadConfig } from '../src/config.js'

const KEY = 'ab'.repeat(32)
const PREVIOUS_KEY = 'cd'.repeat(32)

/** problemsOf returns the problems loadConfig reports for env; fails if it accepts it. */
function problemsOf(env: Record<string, string>): readonly string[] {
  try {
    loadConfig(env)
  } catch (error) {
    if (error instanceof ConfigError) return error.problems
    throw error
  }
  throw new Error(`expected ${JSON.stringify(env)} to be rejected`)
}

/** messageOf is the whole ConfigError message (what main.ts prints), for leak checks. */
function messageOf(env: Record<string, string>): string {
  try {
    loadConfig(env)
  } catch (error) {
    if (error instanceof ConfigError) return error.message
    throw error
  }
  throw new Error(`expected ${JSON.stringify(env)} to be rejected`)
}

describe('loadConfig: OTPAUTH_DATABASE', () => {
  it.each([
    'postgres://otp:pw@db.internal:5432/otpauth',
    'postgresql://otp:pw@db.internal:5432/otpauth?sslmode=require',
    'POSTGRES://otp@db.internal/otpauth',
    '  postgres://otp@127.0.0.1:5433/otpauth  ',
  ])('when it is the URL %j, then it is the PostgreSQL database', (url) => {
    const config = loadConfig({ OTPAUTH_DATABASE: url, OTPAUTH_CODE_HMAC_KEY: KEY })

    expect(config.databaseUrl).toBe(url.trim())
    expect(config.codeHmacKey).toEqual(Buffer.from(KEY, 'hex'))
    // The SQLite path is left at its default, never derived from the URL.
    expect(config.databasePath).toBe('./data/otpauth.db')
  })

  it.each(['/var/lib/otpauth/otpauth.db', './data/x.db', 'relative.db', ':memory:'])(
    'when it is the path %j, then the embedded SQLite file is used (no URL, no key needed)',
    (path) => {
      const config = loadConfig({ OTPAUTH_DATABASE: path })

      expect(config.databaseUrl).toBeUndefined()
      expect(config.databasePath).toBe(path)
      expect(config.codeHmacKey).toBeUndefined()
    },
  )

  it('when it is not set, then the default SQLite file is used', () => {
    const config = loadConfig({})
    expect(config.databaseUrl).toBeUndefined()
    expect(config.databasePath).toBe('./data/otpauth.db')
  })

  it.each([
    ['mysql://u:secret@h/db', 'mysql'],
    ['MySQL://u:secret@h:3306/db?password=secret', 'MySQL'],
    ['file:///tmp/secret.db', 'file'],
    ['redis://:secret@h:6379', 'redis'],
    ['postgres+ssl://u:secret@h/db', 'postgres+ssl'],
  ])(
    'when it is a URL of another scheme (%j), then it is refused naming OTPAUTH_DATABASE, not the password',
    (url, scheme) => {
      const problems = problemsOf({ OTPAUTH_DATABASE: url, OTPAUTH_CODE_HMAC_KEY: KEY })

      expect(problems).toHaveLength(1)
      expect(problems[0]).toMatch(/^OTPAUTH_DATABASE must be a file path or a postgres:\/\//)
      expect(problems[0]).toContain(`${scheme}://`)
      expect(messageOf({ OTPAUTH_DATABASE: url, OTPAUTH_CODE_HMAC_KEY: KEY })).not.toContain(
        'secret',
      )
    },
  )

  it.each([
    'postgres://u:secret@h:99999/db',
    'postgres://u:secret@[::1/db',
    'postgres://u:secret@h:port/db',
  ])(
    'when it is a malformed postgres:// URL (%j), then it is refused naming OTPAUTH_DATABASE, the password hidden',
    (url) => {
      const env = { OTPAUTH_DATABASE: url, OTPAUTH_CODE_HMAC_KEY: KEY }
      const problems = problemsOf(env)

      expect(problems).toHaveLength(1)
      expect(problems[0]).toMatch(/^OTPAUTH_DATABASE is not a valid URL/)
      expect(messageOf(env)).not.toContain('secret')
    },
  )

  it.each([
    'postgres:///otpauth?host=/var/run/postgresql',
    'postgres://%2Fvar%2Frun%2Fpostgresql/otpauth',
    'postgres:///otpauth?host=/var/run/postgresql&user=otp&password=secret',
  ])('when it is a Unix-socket URL (%j), then it is the PostgreSQL database', (url) => {
    expect(loadConfig({ OTPAUTH_DATABASE: url, OTPAUTH_CODE_HMAC_KEY: KEY }).databaseUrl).toBe(url)
  })

  // BUG (reported, src/store/postgres.ts redactUrl + src/config.ts): a URL that does not parse is
  // echoed with only `//[^@/]*@` hidden, so a password holding "/" (base64 passwords often do) or
  // "@" shows in the message main.ts prints to stderr. Flip to it() once fixed.
  it.each([
    'postgres://otp:Xq7/Zr9+Kw==@db:5432/otpauth',
    'postgres://otp:Xq7@Zr9@db:99999/otpauth',
  ])(
    'when a malformed URL has a password with "/" or "@" (%j), then the password stays out of the message',
    (url) => {
      const message = messageOf({ OTPAUTH_DATABASE: url, OTPAUTH_CODE_HMAC_KEY: KEY })
      expect(message).toMatch(/OTPAUTH_DATABASE is not a valid URL/)
      expect(message).not.toMatch(/Xq7|Zr9/)
    },
  )

  it('when it is a postgres:// URL and OTPAUTH_CODE_HMAC_KEY is missing, then it is refused naming the key, not the password', () => {
    const env = { OTPAUTH_DATABASE: 'postgresql://otp:secret@db/otpauth' }
    const problems = problemsOf(env)

    expect(problems).toHaveLength(1)
    expect(problems[0]).toMatch(/^OTPAUTH_CODE_HMAC_KEY is required with a postgres:\/\//)
    expect(messageOf(env)).not.toContain('secret')
  })

  it('when it is a postgres:// URL and OTPAUTH_CODE_HMAC_KEY is blank or too short, then it is refused naming the key', () => {
    expect(
      problemsOf({ OTPAUTH_DATABASE: 'postgres://h/db', OTPAUTH_CODE_HMAC_KEY: '   ' }).join('\n'),
    ).toMatch(/OTPAUTH_CODE_HMAC_KEY is required/)
    expect(
      problemsOf({ OTPAUTH_DATABASE: 'postgres://h/db', OTPAUTH_CODE_HMAC_KEY: 'ab'.repeat(31) }),
    ).toEqual(['OTPAUTH_CODE_HMAC_KEY must be at least 32 bytes, hex or base64 encoded'])
  })
})

describe('loadConfig: code keys', () => {
  it('when both keys are set, then both are decoded (hex or base64)', () => {
    const base64 = Buffer.alloc(32, 9).toString('base64')
    const config = loadConfig({
      OTPAUTH_DATABASE: 'postgres://h/db',
      OTPAUTH_CODE_HMAC_KEY: KEY,
      OTPAUTH_CODE_HMAC_PREVIOUS_KEY: base64,
    })
    expect(config.codeHmacKey).toEqual(Buffer.from(KEY, 'hex'))
    expect(config.codeHmacPreviousKey).toEqual(Buffer.alloc(32, 9))
  })

  it.each([
    ['PostgreSQL', 'postgres://h/db'],
    ['SQLite', '/tmp/otpauth.db'],
  ])(
    'when OTPAUTH_CODE_HMAC_PREVIOUS_KEY is set without OTPAUTH_CODE_HMAC_KEY (%s), then it is refused naming both',
    (_store, database) => {
      const problems = problemsOf({
        OTPAUTH_DATABASE: database,
        OTPAUTH_CODE_HMAC_PREVIOUS_KEY: PREVIOUS_KEY,
      })
      const previous = problems.find((p) => p.startsWith('OTPAUTH_CODE_HMAC_PREVIOUS_KEY'))
      expect(previous).toMatch(/OTPAUTH_CODE_HMAC_PREVIOUS_KEY needs OTPAUTH_CODE_HMAC_KEY/)
    },
  )

  it('when the previous key is too short, then it is refused naming it', () => {
    expect(
      problemsOf({
        OTPAUTH_DATABASE: 'postgres://h/db',
        OTPAUTH_CODE_HMAC_KEY: KEY,
        OTPAUTH_CODE_HMAC_PREVIOUS_KEY: 'cd'.repeat(8),
      }),
    ).toEqual(['OTPAUTH_CODE_HMAC_PREVIOUS_KEY must be at least 32 bytes, hex or base64 encoded'])
  })
})

describe('loadConfig: pool, timeouts and clock skew', () => {
  const pg = { OTPAUTH_DATABASE: 'postgres://otp@db/otpauth', OTPAUTH_CODE_HMAC_KEY: KEY }

  it('when nothing is set, then the documented defaults apply', () => {
    const config = loadConfig(pg)
    expect(config.databasePool).toEqual({
      max: 10,
      connectTimeoutMs: 5_000,
      statementTimeoutMs: 5_000,
    })
    expect(config.databaseStartupTimeoutSeconds).toBe(60)
    expect(config.maxClockSkewMs).toBe(2_000)
  })

  it('when values are set, then they are parsed (trimmed)', () => {
    const config = loadConfig({
      ...pg,
      OTPAUTH_DATABASE_POOL_MAX: ' 25 ',
      OTPAUTH_DATABASE_CONNECT_TIMEOUT_MS: '1500',
      OTPAUTH_DATABASE_STATEMENT_TIMEOUT_MS: '120000',
      OTPAUTH_DATABASE_STARTUP_TIMEOUT_SECONDS: '0',
      OTPAUTH_MAX_CLOCK_SKEW_MS: '0',
    })
    expect(config.databasePool).toEqual({
      max: 25,
      connectTimeoutMs: 1_500,
      statementTimeoutMs: 120_000,
    })
    expect(config.databaseStartupTimeoutSeconds).toBe(0)
    expect(config.maxClockSkewMs).toBe(0)
  })

  it.each([
    ['OTPAUTH_DATABASE_POOL_MAX', ['0', '1001', '-1', '2.5', 'ten', '1e3', '0x10']],
    ['OTPAUTH_DATABASE_CONNECT_TIMEOUT_MS', ['99', '120001', '5s', '-5000']],
    ['OTPAUTH_DATABASE_STATEMENT_TIMEOUT_MS', ['0', '99', '120001', 'infinity']],
    ['OTPAUTH_DATABASE_STARTUP_TIMEOUT_SECONDS', ['-1', '3601', '1.5', '60s']],
    ['OTPAUTH_MAX_CLOCK_SKEW_MS', ['-1', '600001', '2 000', 'NaN']],
  ])('when %s is out of range or not an integer, then it is refused naming it', (name, values) => {
    for (const value of values) {
      const problems = problemsOf({ ...pg, [name]: value })
      expect(problems, `${name}=${value}`).toHaveLength(1)
      expect(problems[0], `${name}=${value}`).toMatch(
        new RegExp(`^${name} must be an integer from -?\\d+ to \\d+, got "${value}"$`),
      )
    }
  })

  it('when several are wrong at once, then every one is listed', () => {
    const problems = problemsOf({
      OTPAUTH_DATABASE: 'postgres://otp:secret@db/otpauth',
      OTPAUTH_DATABASE_POOL_MAX: '0',
      OTPAUTH_DATABASE_CONNECT_TIMEOUT_MS: '1',
      OTPAUTH_DATABASE_STATEMENT_TIMEOUT_MS: '1',
      OTPAUTH_DATABASE_STARTUP_TIMEOUT_SECONDS: '99999',
      OTPAUTH_MAX_CLOCK_SKEW_MS: '99999999',
    })
    expect(problems.map((p) => /^OTPAUTH_[A-Z0-9_]+/.exec(p)?.[0]).sort()).toEqual([
      'OTPAUTH_CODE_HMAC_KEY',
      'OTPAUTH_DATABASE_CONNECT_TIMEOUT_MS',
      'OTPAUTH_DATABASE_POOL_MAX',
      'OTPAUTH_DATABASE_STARTUP_TIMEOUT_SECONDS',
      'OTPAUTH_DATABASE_STATEMENT_TIMEOUT_MS',
      'OTPAUTH_MAX_CLOCK_SKEW_MS',
    ])
  })
})
