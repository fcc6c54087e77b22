import { status } from '@grpc/grpc-js'
import { describe, expect, it, vi } from 'vitest'
import type { AnswerResult } from '../src/auth/auth-store.js'
import { MeteredCodeStore } from '../src/metrics/metered-code-store.js'
import { PasswordHasher } from '../src/auth/password.js'
import type { OtpAuthError } from '../src/client/otpauth-client.js'
import {
  failure,
  PHONES,
  queryRow,
  signUpVerified,
  startTestServer,
  type TestServer,
} from './harness.js'

const HOUR = 3_600_000
const VICTIM = PHONES.alice
const ATTACKER_OWN = PHONES.bob

/** A client address per index, all distinct: 10.x.y.z. */
const addr = (i: number): string => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`

/** codes draws a fixed sequence of codes, so tests know every code the server sends. */
function scriptedCodes(...codes: number[]): (max: number) => number {
  let i = 0
  return () => codes[i++ % codes.length] ?? 0
}

function loginPassword(t: TestServer, phone: string, value: string, ip: string) {
  return t.client.login({ phoneNumber: phone, credential: { $case: 'password', value } }, t.as(ip))
}

function loginCode(t: TestServer, phone: string, value: string, ip: string) {
  return t.client.login({ phoneNumber: phone, credential: { $case: 'code', value } }, t.as(ip))
}

async function settle<T>(calls: Promise<T>[]): Promise<{ ok: T[]; errors: OtpAuthError[] }> {
  const results = await Promise.allSettled(calls)
  return {
    ok: results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : [])),
    errors: results.flatMap((r) => (r.status === 'rejected' ? [r.reason as OtpAuthError] : [])),
  }
}

function reasons(errors: readonly OtpAuthError[]): Record<string, number> {
  const out: Record<string, number> = {}
  for (const e of errors)
    out[e.reason ?? String(e.code)] = (out[e.reason ?? String(e.code)] ?? 0) + 1
  return out
}

/** compared counts the answers a live challenge took a try for (the store's own verdict). */
async function compared(answer: { mock: { results: { value: unknown }[] } }): Promise<number> {
  const results = await Promise.all(
    answer.mock.results.map((r) => r.value as Promise<AnswerResult>),
  )
  return results.filter((r) => r.ok || r.compared).length
}

describe('Brute force', () => {
  it('when an attacker guesses a sign-up code from 300 addresses, then only 5 guesses are compared and after that even the right code fails', async () => {
    const matches = vi.spyOn(MeteredCodeStore.prototype, 'answer')
    const t = await startTestServer({ randomInt: scriptedCodes(424_242) })
    await t.client.register({ phoneNumber: VICTIM })
    expect(t.sms.lastCodeFor(VICTIM)).toBe('424242')
    matches.mockClear()

    const guesses = Array.from({ length: 300 }, (_, i) => String(i).padStart(6, '0'))
    const { ok, errors } = await settle(
      guesses.map((code, i) => t.client.verifyOtp({ phoneNumber: VICTIM, code }, t.as(addr(i)))),
    )
    const right = await failure(
      t.client.verifyOtp({ phoneNumber: VICTIM, code: '424242' }, t.as('192.0.2.1')),
    )

    expect(ok).toHaveLength(0)
    expect(reasons(errors)).toEqual({ INVALID_CREDENTIALS: 300 })
    expect(await compared(matches)).toBe(5)
    expect(right.reason).toBe('INVALID_CREDENTIALS')
    expect(await queryRow(t, 'select verified_at from users')).toEqual({
      verified_at: null,
    })
    console.log(
      `code brute force: 300 guesses from 300 addresses, ${await compared(matches)} compared`,
    )
    matches.mockRestore()
  })

  it('when 200 guesses at a login code race with the right one among them, then at most 5 are compared and at most one logs in', async () => {
    const matches = vi.spyOn(MeteredCodeStore.prototype, 'answer')
    const t = await startTestServer({ randomInt: scriptedCodes(111_111, 777_777) })
    await signUpVerified(t, VICTIM)
    t.clock.advance(31_000) // past the resend cooldown Register started
    await t.client.requestLoginCode({ phoneNumber: VICTIM }, t.as('192.0.2.9'))
    expect(t.sms.lastCodeFor(VICTIM, 'login')).toBe('777777')
    matches.mockClear()

    const codes = Array.from({ length: 200 }, (_, i) => String(500_000 + i))
    codes.splice(100, 0, '777777')
    const { ok, errors } = await settle(codes.map((code, i) => loginCode(t, VICTIM, code, addr(i))))

    expect(await compared(matches)).toBeLessThanOrEqual(5)
    expect(ok.length).toBeLessThanOrEqual(1)
    expect(ok.length + errors.length).toBe(201)
    expect(new Set(errors.map((e) => e.code))).toEqual(new Set([status.UNAUTHENTICATED]))
    console.log(
      `login-code race: 201 concurrent guesses, ${await compared(matches)} compared, ${ok.length} logged in`,
    )
    matches.mockRestore()
  })

  it('when an untrusted peer rotates x-forwarded-for, then it is still one client and is locked after 3', async () => {
    const t = await startTestServer({ config: { trustedProxies: [] } })
    await signUpVerified(t, VICTIM, 'victim password')
    const errors: OtpAuthError[] = []
    for (let i = 0; i < 20; i += 1) {
      errors.push(await failure(loginPassword(t, VICTIM, `guess ${i}`, addr(i))))
    }
    const withRightPassword = await failure(
      loginPassword(t, VICTIM, 'victim password', '192.0.2.77'),
    )

    expect(reasons(errors)).toEqual({ INVALID_CREDENTIALS: 3, CLIENT_LOCKED_OUT: 17 })
    expect(withRightPassword.reason).toBe('CLIENT_LOCKED_OUT')
    console.log('untrusted x-forwarded-for rotation: 20 guesses, 3 checked')
  })

  it('when guesses come from many addresses inside one IPv6 /64, then they share one lockout', async () => {
    const t = await startTestServer()
    await signUpVerified(t, VICTIM, 'victim password')
    const inside = Array.from(
      { length: 10 },
      (_, i) => `2001:db8:aa:bb:${((i * 7919) & 0xffff).toString(16)}:${i}::${i + 1}`,
    )
    const errors: OtpAuthError[] = []
    for (const ip of inside) errors.push(await failure(loginPassword(t, VICTIM, 'guess', ip)))
    const neighbour = await failure(loginPassword(t, VICTIM, 'guess', '2001:db8:aa:bc::1'))

    expect(reasons(errors)).toEqual({ INVALID_CREDENTIALS: 3, CLIENT_LOCKED_OUT: 7 })
    expect(neighbour.reason).toBe('INVALID_CREDENTIALS')
  })

  it('when an attacker interleaves successful logins to their own account, then the lock still comes after 3 failures and holds for an hour', async () => {
    const t = await startTestServer()
    await signUpVerified(t, VICTIM, 'victim password')
    await signUpVerified(t, ATTACKER_OWN, 'attacker password')
    const ip = '203.0.113.99'

    const steps: string[] = []
    for (let i = 0; i < 6; i += 1) {
      const own = await loginPassword(t, ATTACKER_OWN, 'attacker password', ip).then(
        () => 'own:OK',
        (e: unknown) => `own:${String((e as OtpAuthError).reason)}`,
      )
      const guess = await loginPassword(t, VICTIM, `guess ${i}`, ip).then(
        () => 'guess:OK',
        (e: unknown) => `guess:${String((e as OtpAuthError).reason)}`,
      )
      steps.push(own, guess)
    }

    expect(steps).toEqual([
      'own:OK',
      'guess:INVALID_CREDENTIALS',
      'own:OK',
      'guess:INVALID_CREDENTIALS',
      'own:OK',
      'guess:INVALID_CREDENTIALS',
      'own:CLIENT_LOCKED_OUT',
      'guess:CLIENT_LOCKED_OUT',
      'own:CLIENT_LOCKED_OUT',
      'guess:CLIENT_LOCKED_OUT',
      'own:CLIENT_LOCKED_OUT',
      'guess:CLIENT_LOCKED_OUT',
    ])
    t.clock.advance(HOUR - 1_000)
    expect((await failure(loginPassword(t, VICTIM, 'victim password', ip))).reason).toBe(
      'CLIENT_LOCKED_OUT',
    )
    t.clock.advance(1_000)
    await loginPassword(t, VICTIM, 'victim password', ip)
  })

  it("when 1500 addresses guess one number's password concurrently, then exactly 100 are checked and the rest are refused, the right password included", async () => {
    const verify = vi.spyOn(PasswordHasher.prototype, 'verify')
    const t = await startTestServer()
    await signUpVerified(t, VICTIM, 'victim password')
    verify.mockClear()

    let checked = 0
    let refused = 0
    for (let batch = 0; batch < 5; batch += 1) {
      const { ok, errors } = await settle(
        Array.from({ length: 300 }, (_, i) =>
          loginPassword(t, VICTIM, `guess ${batch}-${i}`, addr(batch * 300 + i)),
        ),
      )
      expect(ok).toHaveLength(0)
      const r = reasons(errors)
      checked += r['INVALID_CREDENTIALS'] ?? 0
      refused += r['PASSWORD_LOGIN_DISABLED'] ?? 0
      expect(
        Object.keys(r).every((k) => k === 'INVALID_CREDENTIALS' || k === 'PASSWORD_LOGIN_DISABLED'),
      ).toBe(true)
    }
    const right = await failure(loginPassword(t, VICTIM, 'victim password', '192.0.2.200'))

    expect(checked).toBe(100)
    expect(refused).toBe(1400)
    expect(verify).toHaveBeenCalledTimes(100)
    expect([right.code, right.reason]).toEqual([
      status.FAILED_PRECONDITION,
      'PASSWORD_LOGIN_DISABLED',
    ])
    console.log(
      `per-number cap: 1500 guesses from 1500 addresses, ${checked} checked, ${refused} refused`,
    )
    verify.mockRestore()
  })
})

describe('Races', () => {
  it('when 20 wrong password logins race from one address, then exactly 3 reach the hash, the rest are RESOURCE_EXHAUSTED and the address is locked', async () => {
    const verify = vi.spyOn(PasswordHasher.prototype, 'verify')
    const t = await startTestServer()
    await signUpVerified(t, VICTIM, 'victim password')
    verify.mockClear()
    const ip = '203.0.113.20'

    const { errors } = await settle(
      Array.from({ length: 20 }, (_, i) => loginPassword(t, VICTIM, `guess ${i}`, ip)),
    )

    expect(reasons(errors)).toEqual({ INVALID_CREDENTIALS: 3, CLIENT_LOCKED_OUT: 17 })
    expect(verify).toHaveBeenCalledTimes(3)
    for (const e of errors) {
      expect(e.code).toBe(
        e.reason === 'CLIENT_LOCKED_OUT' ? status.RESOURCE_EXHAUSTED : status.UNAUTHENTICATED,
      )
    }
    const after = await failure(loginPassword(t, VICTIM, 'victim password', ip))
    expect(after.reason).toBe('CLIENT_LOCKED_OUT')
    expect(after.retryDelayMs).toBeGreaterThan(HOUR - 5_000)
    expect(await queryRow(t, 'select count(*) as n from lockouts where locked_until > 0')).toEqual({
      n: 1,
    })
    verify.mockRestore()
  })

  it('when wrong codes and wrong passwords race from one address over both RPCs, then the three-strike count is still exact', async () => {
    const t = await startTestServer()
    await signUpVerified(t, VICTIM, 'victim password')
    await t.client.register({ phoneNumber: PHONES.carol })
    const ip = '203.0.113.21'

    const calls = Array.from({ length: 30 }, (_, i) =>
      i % 2 === 0
        ? loginPassword(t, VICTIM, `guess ${i}`, ip)
        : t.client.verifyOtp({ phoneNumber: PHONES.carol, code: String(100_000 + i) }, t.as(ip)),
    )
    const { ok, errors } = await settle<unknown>(calls)

    expect(ok).toHaveLength(0)
    expect(reasons(errors)).toEqual({ INVALID_CREDENTIALS: 3, CLIENT_LOCKED_OUT: 27 })
  })

  it('when 50 Register calls race for one number with different passwords, then one account, one SMS and one valid code result', async () => {
    const t = await startTestServer()
    const { ok, errors } = await settle(
      Array.from({ length: 50 }, (_, i) =>
        t.client.register({ phoneNumber: VICTIM, password: `password number ${i}` }, t.as(addr(i))),
      ),
    )

    expect(ok).toHaveLength(1)
    expect(reasons(errors)).toEqual({ RESEND_TOO_SOON: 49 })
    expect(t.sms.sentTo(VICTIM)).toHaveLength(1)
    await t.client.verifyOtp({ phoneNumber: VICTIM, code: t.sms.lastCodeFor(VICTIM) })
    expect(await queryRow(t, 'select count(*) as n from users')).toEqual({ n: 1 })
  })

  it('when a login code is raced by 20 logins, then exactly one session results, and once burned all 20 fail', async () => {
    const t = await startTestServer()
    await signUpVerified(t, VICTIM)
    t.clock.advance(31_000)
    await t.client.requestLoginCode({ phoneNumber: VICTIM })
    const code = t.sms.lastCodeFor(VICTIM, 'login')

    const first = await settle(
      Array.from({ length: 20 }, (_, i) => loginCode(t, VICTIM, code, addr(1000 + i))),
    )
    const again = await settle(
      Array.from({ length: 20 }, (_, i) => loginCode(t, VICTIM, code, addr(2000 + i))),
    )

    expect(first.ok).toHaveLength(1)
    expect(reasons(first.errors)).toEqual({ INVALID_CREDENTIALS: 19 })
    expect(again.ok).toHaveLength(0)
    expect(reasons(again.errors)).toEqual({ INVALID_CREDENTIALS: 20 })
    expect(await queryRow(t, 'select count(*) as n from sessions')).toEqual({
      n: 1,
    })
  })
})
