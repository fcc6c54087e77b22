import { describe, expect, it } from 'vitest'
import { ConfigError, loadConfig } from '../src/config.js'

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

describe('loadConfig', () => {
  it('when nothing is set, then the documented defaults apply', () => {
    const config = loadConfig({})

    expect(config).toMatchObject({
      address: '0.0.0.0:50051',
      databasePath: './data/otpauth.db',
      databaseSynchronous: 'normal',
      sms: { kind: 'console' },
      trustedProxies: [],
      defaultRegion: undefined,
      codeHmacKey: undefined,
      codeTtlSeconds: 300,
      codeMaxAttempts: 5,
      resendCooldownSeconds: 30,
      sendsPerNumberPerHour: 5,
      lockoutThreshold: 3,
      lockoutSeconds: 3600,
      numberFailureLimit: 100,
      sessionTtlSeconds: 86_400,
      logLevel: 'info',
    })
    expect(config.argon2).toEqual({ memoryKib: 19_456, timeCost: 2, parallelism: 1 })
    expect(config.sendsPerClientPerHour).toBeGreaterThanOrEqual(100)
    expect(config.cacheMax).toBeGreaterThan(0)
    expect(config.maxMessageBytes).toBeLessThanOrEqual(4 * 1024 * 1024)
    expect(Object.isFrozen(config)).toBe(true)
  })

  it('when values are set, then they are parsed (trimmed, case-insensitive where it makes sense)', () => {
    const config = loadConfig({
      OTPAUTH_ADDRESS: '[::]:0',
      OTPAUTH_DATABASE: '/tmp/x.db',
      OTPAUTH_SMS: ' WEBHOOK ',
      OTPAUTH_SMS_WEBHOOK_URL: 'https://sms.example/send',
      OTPAUTH_SMS_WEBHOOK_TIMEOUT_MS: '2500',
      OTPAUTH_TRUSTED_PROXIES: '10.0.0.0/8, fd00::/8 ,192.0.2.1',
      OTPAUTH_DEFAULT_REGION: 'gb',
      OTPAUTH_CODE_HMAC_KEY: 'ab'.repeat(32),
      OTPAUTH_LOCKOUT_THRESHOLD: '5',
      OTPAUTH_LOG_LEVEL: 'DEBUG',
    })

    expect(config.address).toBe('[::]:0')
    expect(config.databasePath).toBe('/tmp/x.db')
    expect(config.sms).toEqual({
      kind: 'webhook',
      url: new URL('https://sms.example/send'),
      timeoutMs: 2500,
    })
    expect(config.trustedProxies).toEqual(['10.0.0.0/8', 'fd00::/8', '192.0.2.1'])
    expect(config.defaultRegion).toBe('GB')
    expect(config.codeHmacKey).toEqual(Buffer.alloc(32, 0xab))
    expect(config.lockoutThreshold).toBe(5)
    expect(config.logLevel).toBe('debug')
  })

  it('when a variable has a bad value, then the problem names that variable', () => {
    const cases: [string, string][] = [
      ['OTPAUTH_ADDRESS', 'localhost'],
      ['OTPAUTH_ADDRESS', '0.0.0.0:99999'],
      ['OTPAUTH_ADDRESS', ':50051'],
      ['OTPAUTH_SMS', 'carrier-pigeon'],
      ['OTPAUTH_SMS_WEBHOOK_TIMEOUT_MS', '10'],
      ['OTPAUTH_DATABASE_SYNCHRONOUS', 'off'],
      ['OTPAUTH_CODE_TTL_SECONDS', '3600'],
      ['OTPAUTH_CODE_TTL_SECONDS', 'five minutes'],
      ['OTPAUTH_CODE_MAX_ATTEMPTS', '0'],
      ['OTPAUTH_RESEND_COOLDOWN_SECONDS', '-1'],
      ['OTPAUTH_SENDS_PER_NUMBER_PER_HOUR', '1.5'],
      ['OTPAUTH_SENDS_PER_CLIENT_PER_HOUR', '1e3'],
      ['OTPAUTH_LOCKOUT_THRESHOLD', 'three'],
      ['OTPAUTH_LOCKOUT_SECONDS', '0'],
      ['OTPAUTH_NUMBER_FAILURE_LIMIT', '101'],
      ['OTPAUTH_SESSION_TTL_SECONDS', '99999999999999999999'],
      ['OTPAUTH_ARGON2_MEMORY_KIB', '1024'],
      ['OTPAUTH_LOG_LEVEL', 'loud'],
      ['OTPAUTH_CODE_HMAC_KEY', 'too short'],
      ['OTPAUTH_DEFAULT_REGION', 'XX'],
      ['OTPAUTH_DEFAULT_REGION', 'USA'],
    ]
    for (const [name, value] of cases) {
      const problems = problemsOf({ [name]: value })
      expect(problems, `${name}=${value}`).toHaveLength(1)
      expect(problems[0], `${name}=${value}`).toContain(name)
    }
  })

  it('when several variables are bad, then every one is reported at once', () => {
    const problems = problemsOf({
      OTPAUTH_ADDRESS: 'nowhere',
      OTPAUTH_LOCKOUT_THRESHOLD: 'x',
      OTPAUTH_DEFAULT_REGION: 'ZZ',
    })

    expect(problems).toHaveLength(3)
    for (const name of ['OTPAUTH_ADDRESS', 'OTPAUTH_LOCKOUT_THRESHOLD', 'OTPAUTH_DEFAULT_REGION']) {
      expect(
        problems.filter((p) => p.includes(name)),
        name,
      ).toHaveLength(1)
    }
  })

  it('when the webhook sender has no URL or a non-http URL, then OTPAUTH_SMS_WEBHOOK_URL is named', () => {
    for (const env of [
      { OTPAUTH_SMS: 'webhook' },
      { OTPAUTH_SMS: 'webhook', OTPAUTH_SMS_WEBHOOK_URL: '   ' },
      { OTPAUTH_SMS: 'webhook', OTPAUTH_SMS_WEBHOOK_URL: 'not a url' },
      { OTPAUTH_SMS: 'webhook', OTPAUTH_SMS_WEBHOOK_URL: 'ftp://sms.example/' },
      { OTPAUTH_SMS: 'webhook', OTPAUTH_SMS_WEBHOOK_URL: 'file:///etc/passwd' },
    ]) {
      const problems = problemsOf(env)
      expect(problems, JSON.stringify(env)).toHaveLength(1)
      expect(problems[0]).toContain('OTPAUTH_SMS_WEBHOOK_URL')
    }
  })

  it('when OTPAUTH_TRUSTED_PROXIES holds a bad CIDR, then it is refused and names the entry', () => {
    for (const bad of [
      'not-an-ip',
      '10.0.0.0/33',
      '10.0.0.0/-1',
      'fd00::/129',
      '10.0.0.0/8x',
      '10.0.0.0/',
      '10.0.0.0/8/8',
      '10.0.0.0/ 8',
      '10.0.0.0/0x8',
      '10.0.0.0/1e1',
      '10.0.0.0/8.0',
      '10.0.0.256/32',
      '10.0.0.0/8,bogus',
    ]) {
      const problems = problemsOf({ OTPAUTH_TRUSTED_PROXIES: bad })
      expect(problems, bad).toHaveLength(1)
      expect(problems[0]).toContain('OTPAUTH_TRUSTED_PROXIES')
    }
  })

  it('when an integer variable is empty or blank, then its default applies', () => {
    const config = loadConfig({ OTPAUTH_LOCKOUT_THRESHOLD: '', OTPAUTH_CODE_TTL_SECONDS: '  ' })

    expect(config.lockoutThreshold).toBe(3)
    expect(config.codeTtlSeconds).toBe(300)
  })
})
