import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import { ConfigError, KNOWN_VARIABLES, loadConfig, TOOL_VARIABLES } from '../src/config.js'
import { buildServer, ROOT, runToExit } from './hostile-support.js'

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

/** A name the service or its tools read: OTPAUTH_ and at least one more word character. */
const NAME = /\bOTPAUTH_[A-Z0-9_]*[A-Z0-9]/g
const ALLOWED: readonly string[] = [...KNOWN_VARIABLES, ...TOOL_VARIABLES]

/** filesUnder lists the files below dir (relative to the repository), skipping dependencies and output. */
function filesUnder(dir: string): string[] {
  const skip = new Set(['node_modules', 'dist', 'gen', '.git', 'data'])
  return readdirSync(join(ROOT, dir)).flatMap((entry) => {
    if (skip.has(entry)) return []
    const path = join(ROOT, dir, entry)
    return statSync(path).isDirectory() ? filesUnder(relative(ROOT, path)) : [relative(ROOT, path)]
  })
}

describe('loadConfig: unknown OTPAUTH_ variables', () => {
  it('when a setting is misspelt, then start-up refuses it and names the closest setting', () => {
    const cases: [string, string][] = [
      ['OTPAUTH_SMS_ALLOWED_COUNTRY', 'OTPAUTH_SMS_ALLOWED_COUNTRIES'],
      ['OTPAUTH_SMS_BUDGET_PER_COUNTRY_DAY', 'OTPAUTH_SMS_BUDGET_PER_COUNTRY_PER_DAY'],
      ['OTPAUTH_TWILLIO_FROM', 'OTPAUTH_TWILIO_FROM'],
      ['OTPAUTH_LOCKOUT_TRESHOLD', 'OTPAUTH_LOCKOUT_THRESHOLD'],
      ['OTPAUTH_DATABASE_URL', 'OTPAUTH_DATABASE'],
      ['otpauth_sms', 'OTPAUTH_SMS'],
      ['Otpauth_Code_Hmac_Key', 'OTPAUTH_CODE_HMAC_KEY'],
    ]
    for (const [typo, meant] of cases) {
      expect(problemsOf({ [typo]: 'US' }), typo).toEqual([
        `${typo} is not a setting; did you mean ${meant}?`,
      ])
    }
  })

  it('when an unknown name is far from every setting, then it is refused without a guess', () => {
    for (const name of ['OTPAUTH_FROBNICATE', 'OTPAUTH_X', 'OTPAUTH_ENABLE_FRAUD_GUARD']) {
      const problems = problemsOf({ [name]: '1' })
      expect(problems, name).toHaveLength(1)
      expect(problems[0], name).toMatch(new RegExp(`^${name} is not a setting of this version;`))
      expect(problems[0], name).not.toContain('did you mean')
    }
  })

  it('when a misspelt name holds a secret, then the problem names the variable, never its value', () => {
    const problems = problemsOf({ OTPAUTH_TWILIO_AUTH_TOKN: 'tok-s3cr3t' })

    expect(problems).toEqual([
      'OTPAUTH_TWILIO_AUTH_TOKN is not a setting; did you mean OTPAUTH_TWILIO_AUTH_TOKEN?',
    ])
  })

  it('when unknown names come with bad values, then every problem is listed at once', () => {
    const problems = problemsOf({
      OTPAUTH_SMS_ALLOWED_COUNTRY: 'US',
      OTPAUTH_FROBNICATE: '1',
      OTPAUTH_LOCKOUT_THRESHOLD: 'x',
    })

    expect(problems).toHaveLength(3)
    for (const name of [
      'OTPAUTH_SMS_ALLOWED_COUNTRY',
      'OTPAUTH_FROBNICATE',
      'OTPAUTH_LOCKOUT_THRESHOLD',
    ]) {
      expect(problems.filter((p) => p.startsWith(`${name} `))).toHaveLength(1)
    }
  })

  it('when every known setting and tool variable is present, then none is refused as unknown', () => {
    // Blank means unset, which every setting accepts: only the names are under test here.
    const env = Object.fromEntries(KNOWN_VARIABLES.map((name) => [name, '']))

    expect(() => loadConfig(env)).not.toThrow()
    expect(() =>
      loadConfig({ ...env, OTPAUTH_TEST_DATABASE_URL: 'postgres://u:p@127.0.0.1/x' }),
    ).not.toThrow()
  })

  it("when other variables are present, then they are not loadConfig's business", () => {
    expect(() =>
      loadConfig({ PATH: '/usr/bin', OTPAUTH: '1', MY_OTPAUTH_SMS: 'x', OTPAUTHSMS: 'x' }),
    ).not.toThrow()
  })

  it('when src/config.ts names a variable, then it is in the list, and every listed setting is read there', () => {
    const source = readFileSync(join(ROOT, 'src/config.ts'), 'utf8')
    const list = /export const KNOWN_VARIABLES = \[[^\]]*\] as const/.exec(source)?.[0] ?? ''
    expect(list).not.toBe('')
    const outsideList = new Set(source.replace(list, '').match(NAME))

    expect([...outsideList].filter((name) => !ALLOWED.includes(name))).toEqual([])
    expect(KNOWN_VARIABLES.filter((name) => !outsideList.has(name))).toEqual([])
    expect(new Set(KNOWN_VARIABLES).size).toBe(KNOWN_VARIABLES.length)
  })

  it('when the code, the deploy files or the bench set or name a variable, then it is one start-up accepts', () => {
    const files = [
      ...filesUnder('src'),
      ...filesUnder('deploy'),
      ...filesUnder('bench').filter((f) => !f.startsWith('bench/results/')),
      'Dockerfile',
      '.ci/run',
    ]
    const strays = files.flatMap((file) =>
      (readFileSync(join(ROOT, file), 'utf8').match(NAME) ?? [])
        .filter((name) => !ALLOWED.includes(name))
        .map((name) => `${file}: ${name}`),
    )

    expect(strays).toEqual([])
  })
})

describe('the documented settings', () => {
  /** settingsIn lists the names in the first cell of each table row that starts with one. */
  function settingsIn(markdown: string): string[] {
    return markdown
      .split('\n')
      .filter((line) => line.startsWith('| `OTPAUTH_'))
      .flatMap((line) => line.split('|')[1]?.match(NAME) ?? [])
  }

  it('when the README lists the settings, then its configuration table has a row for every setting and none for anything else', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')
    const start = readme.indexOf('\n## Configuration\n')
    expect(start).toBeGreaterThan(0)
    const documented = settingsIn(readme.slice(start, readme.indexOf('\n## ', start + 1)))

    expect(KNOWN_VARIABLES.filter((name) => !documented.includes(name))).toEqual([])
    expect(documented.filter((name) => !ALLOWED.includes(name))).toEqual([])
  })

  it('when a docs/ table names a setting, then it is one', () => {
    const strays = filesUnder('docs')
      .filter((file) => file.endsWith('.md'))
      .flatMap((file) =>
        settingsIn(readFileSync(join(ROOT, file), 'utf8'))
          .filter((name) => !ALLOWED.includes(name))
          .map((name) => `${file}: ${name}`),
      )

    expect(strays).toEqual([])
  })
})

describe('main: unknown OTPAUTH_ variables', () => {
  let main = ''
  beforeAll(() => {
    main = buildServer()
  }, 120_000)

  it('when the environment holds a misspelt setting, then the process exits 2 before listening, naming it and the setting meant', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'otpauth-config-'))
    onTestFinished(() => {
      rmSync(dir, { recursive: true, force: true })
    })

    const { code, stdout, stderr } = await runToExit(main, {
      OTPAUTH_ADDRESS: '127.0.0.1:0',
      OTPAUTH_DATABASE: join(dir, 'otpauth.db'),
      OTPAUTH_SMS_ALLOWED_COUNTRY: 'US',
    })

    expect(code).toBe(2)
    expect(stderr).toContain(
      'OTPAUTH_SMS_ALLOWED_COUNTRY is not a setting; did you mean OTPAUTH_SMS_ALLOWED_COUNTRIES?',
    )
    expect(stdout).not.toContain('listening')
    expect(readdirSync(dir)).toEqual([])
  })
})
