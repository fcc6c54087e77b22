import { status } from '@grpc/grpc-js'
import { describe, expect, it } from 'vitest'
import type { OtpAuthError } from '../src/client/otpauth-client.js'
import { failure, PHONES, signUpVerified, startTestServer, type TestServer } from './harness.js'

const HOUR = 3_600_000
const ATTACKER = '203.0.113.66'

function password(t: TestServer, phone: string, value: string, ip: string) {
  return t.client.login({ phoneNumber: phone, credential: { $case: 'password', value } }, t.as(ip))
}

function expectLockedOut(err: OtpAuthError, remainingMs = HOUR): void {
  expect(err.code).toBe(status.RESOURCE_EXHAUSTED)
  expect(err.reason).toBe('CLIENT_LOCKED_OUT')
  expect(err.domain).toBe('otpauth')
  expect(err.retryDelayMs).toBeGreaterThan(remainingMs - 2_000)
  expect(err.retryDelayMs).toBeLessThanOrEqual(remainingMs)
}

/** fails 3 times from ip: wrong password, wrong code, unknown number. */
async function failThrice(t: TestServer, ip: string): Promise<void> {
  const errors = [
    await failure(password(t, PHONES.alice, 'wrong password', ip)),
    await failure(t.client.verifyOtp({ phoneNumber: PHONES.bob, code: '000000' }, t.as(ip))),
    await failure(password(t, PHONES.carol, 'wrong password', ip)),
  ]
  for (const err of errors) expect(err.reason).toBe('INVALID_CREDENTIALS')
}

async function setUp(options: Parameters<typeof startTestServer>[0] = {}): Promise<TestServer> {
  const t = await startTestServer(options)
  await signUpVerified(t, PHONES.alice, 'alice password')
  return t
}

describe('Client lockout', () => {
  it('when one client fails 3 times, then Login and VerifyOtp are RESOURCE_EXHAUSTED for an hour, even with the right credentials', async () => {
    const t = await setUp()
    await t.client.register({ phoneNumber: PHONES.dave })
    const daveCode = t.sms.lastCodeFor(PHONES.dave)

    await failThrice(t, ATTACKER)

    expectLockedOut(await failure(password(t, PHONES.alice, 'alice password', ATTACKER)))
    expectLockedOut(
      await failure(
        t.client.verifyOtp({ phoneNumber: PHONES.dave, code: daveCode }, t.as(ATTACKER)),
      ),
    )
    const withCode = await failure(
      t.client.login(
        { phoneNumber: PHONES.alice, credential: { $case: 'code', value: '123456' } },
        t.as(ATTACKER),
      ),
    )
    expectLockedOut(withCode)
    expect(withCode.errorMetadata).toEqual({ retryAfterSeconds: '3600' })
    // The locked try did not burn Dave's code: it verifies from elsewhere.
    await t.client.verifyOtp({ phoneNumber: PHONES.dave, code: daveCode }, t.as('198.51.100.5'))
  })

  it('when a client has failed twice, then it is not locked yet', async () => {
    const t = await setUp()
    await failure(password(t, PHONES.alice, 'wrong password', ATTACKER))
    await failure(password(t, PHONES.alice, 'wrong password', ATTACKER))

    await password(t, PHONES.alice, 'alice password', ATTACKER)
  })

  it('when one client is locked out, then other clients are unaffected', async () => {
    const t = await setUp()
    await failThrice(t, ATTACKER)

    await password(t, PHONES.alice, 'alice password', '198.51.100.7')
    const other = await failure(password(t, PHONES.alice, 'wrong password', '198.51.100.8'))
    expect(other.reason).toBe('INVALID_CREDENTIALS')
  })

  it('when time passes, then the retry delay shrinks, and the lock lifts after an hour', async () => {
    const t = await setUp()
    await failThrice(t, ATTACKER)

    t.clock.advance(20 * 60_000)
    expectLockedOut(
      await failure(password(t, PHONES.alice, 'alice password', ATTACKER)),
      40 * 60_000,
    )
    t.clock.advance(40 * 60_000 - 1)
    expectLockedOut(await failure(password(t, PHONES.alice, 'alice password', ATTACKER)), 1)
    t.clock.advance(1)

    await password(t, PHONES.alice, 'alice password', ATTACKER)
  })

  it('when the lock has lifted, then the client gets a fresh set of 3 tries', async () => {
    const t = await setUp()
    await failThrice(t, ATTACKER)
    t.clock.advance(HOUR)

    await failure(password(t, PHONES.alice, 'wrong password', ATTACKER))
    await failure(password(t, PHONES.alice, 'wrong password', ATTACKER))
    await password(t, PHONES.alice, 'alice password', ATTACKER)
  })

  it('when an attacker logs into their own account between guesses at another number, then nothing is reset', async () => {
    const t = await setUp()
    await signUpVerified(t, PHONES.dave, 'attacker own password', ATTACKER)

    await failure(password(t, PHONES.alice, 'guess 1', ATTACKER))
    await password(t, PHONES.dave, 'attacker own password', ATTACKER)
    await failure(password(t, PHONES.alice, 'guess 2', ATTACKER))
    await password(t, PHONES.dave, 'attacker own password', ATTACKER)
    const third = await failure(password(t, PHONES.alice, 'guess 3', ATTACKER))
    expect(third.reason).toBe('INVALID_CREDENTIALS')

    expectLockedOut(await failure(password(t, PHONES.dave, 'attacker own password', ATTACKER)))
  })

  it("when a success comes for the same number, then that number's failures are forgotten", async () => {
    const t = await setUp()
    const ip = '198.51.100.20'

    await failure(password(t, PHONES.alice, 'typo 1', ip))
    await failure(password(t, PHONES.alice, 'typo 2', ip))
    await password(t, PHONES.alice, 'alice password', ip)
    await failure(password(t, PHONES.alice, 'typo 3', ip))
    await failure(password(t, PHONES.alice, 'typo 4', ip))

    await password(t, PHONES.alice, 'alice password', ip)
  })

  it('when a success for one number follows failures against another, then only the same number is forgotten', async () => {
    const t = await setUp()
    const ip = '198.51.100.21'

    await failure(password(t, PHONES.bob, 'guess', ip))
    await failure(password(t, PHONES.alice, 'typo', ip))
    await password(t, PHONES.alice, 'alice password', ip)
    await failure(password(t, PHONES.alice, 'typo', ip))
    const err = await failure(password(t, PHONES.bob, 'guess', ip))
    expect(err.reason).toBe('INVALID_CREDENTIALS')

    expectLockedOut(await failure(password(t, PHONES.alice, 'alice password', ip)))
  })

  it('when a client is locked out, then ValidateSession, Logout and Register still work', async () => {
    const t = await setUp()
    const session = await password(t, PHONES.alice, 'alice password', ATTACKER)
    await failThrice(t, ATTACKER)

    const valid = await t.client.validateSession(
      { sessionToken: session.sessionToken },
      t.as(ATTACKER),
    )
    expect(valid.userId).toBe(session.userId)
    await t.client.logout({ sessionToken: session.sessionToken }, t.as(ATTACKER))
    await t.client.register({ phoneNumber: PHONES.dave }, t.as(ATTACKER))
  })

  it('when malformed requests are sent, then they do not count toward the lockout', async () => {
    const t = await setUp()

    for (let i = 0; i < 3; i += 1) {
      await failure(password(t, 'not a phone', 'x', ATTACKER))
      await failure(password(t, PHONES.alice, '', ATTACKER))
      await failure(
        t.client.login(
          { phoneNumber: PHONES.alice, credential: { $case: 'code', value: '12' } },
          t.as(ATTACKER),
        ),
      )
      await failure(t.client.login({ phoneNumber: PHONES.alice }, t.as(ATTACKER)))
      await failure(t.client.verifyOtp({ phoneNumber: PHONES.alice, code: '' }, t.as(ATTACKER)))
    }

    await password(t, PHONES.alice, 'alice password', ATTACKER)
  })

  it('when 10 wrong logins race from one client, then at most 3 are checked and the rest are locked out', async () => {
    const t = await setUp()

    const results = await Promise.allSettled(
      Array.from({ length: 10 }, () => password(t, PHONES.alice, 'wrong password', ATTACKER)),
    )

    const reasons = results.map((r) =>
      r.status === 'rejected' ? (r.reason as OtpAuthError).reason : 'OK',
    )
    expect(reasons.filter((r) => r === 'INVALID_CREDENTIALS').length).toBeLessThanOrEqual(3)
    expect(reasons.filter((r) => r === 'CLIENT_LOCKED_OUT').length).toBeGreaterThanOrEqual(7)
    expect(reasons.filter((r) => r !== 'INVALID_CREDENTIALS' && r !== 'CLIENT_LOCKED_OUT')).toEqual(
      [],
    )
    expectLockedOut(await failure(password(t, PHONES.alice, 'alice password', ATTACKER)))
  })

  it('when the server restarts, then the lockout is still in force', async () => {
    const t = await setUp()
    await failThrice(t, ATTACKER)

    const after = await t.restart()

    expectLockedOut(await failure(password(after, PHONES.alice, 'alice password', ATTACKER)))
    await password(after, PHONES.alice, 'alice password', '198.51.100.9')
  })

  it('when failures were counted before a restart, then they still count after it', async () => {
    const t = await setUp()
    await failure(password(t, PHONES.alice, 'wrong', ATTACKER))
    await failure(password(t, PHONES.bob, 'wrong', ATTACKER))

    const after = await t.restart()
    await failure(password(after, PHONES.carol, 'wrong', ATTACKER))

    expectLockedOut(await failure(password(after, PHONES.alice, 'alice password', ATTACKER)))
  })

  it('when IPv6 clients share a /64, then they share a lockout; another /64 does not', async () => {
    const t = await setUp()

    await failure(password(t, PHONES.alice, 'wrong', '2001:db8:aa:1::1'))
    await failure(password(t, PHONES.alice, 'wrong', '2001:db8:aa:1:ffff:ffff:ffff:ffff'))
    await failure(password(t, PHONES.alice, 'wrong', '2001:0DB8:00AA:0001:1234::5'))

    expectLockedOut(await failure(password(t, PHONES.alice, 'alice password', '2001:db8:aa:1::99')))
    await password(t, PHONES.alice, 'alice password', '2001:db8:aa:2::1')
  })

  it('when no proxy is trusted, then x-forwarded-for is ignored and rotating it does not escape the lock', async () => {
    const t = await setUp({ config: { trustedProxies: [] } })

    for (let i = 1; i <= 3; i += 1) {
      await failure(password(t, PHONES.alice, 'wrong', `192.0.2.${i}`))
    }

    for (const ip of ['192.0.2.4', '198.51.100.1', '2001:db8::1', '10.0.0.1, 192.0.2.99']) {
      expectLockedOut(await failure(password(t, PHONES.alice, 'alice password', ip)))
    }
    expectLockedOut(
      await failure(
        t.client.login({
          phoneNumber: PHONES.alice,
          credential: { $case: 'password', value: 'alice password' },
        }),
      ),
    )
  })

  it('when a trusted proxy forwards a chain, then the right-most untrusted entry is the client', async () => {
    const t = await setUp()

    // Loopback is the trusted proxy; the client claims to be 10.9.9.x in the left part.
    for (let i = 1; i <= 3; i += 1) {
      await failure(password(t, PHONES.alice, 'wrong', `10.9.9.${i}, 1.2.3.4, 127.0.0.1`))
    }

    expectLockedOut(await failure(password(t, PHONES.alice, 'alice password', '1.2.3.4')))
    expectLockedOut(await failure(password(t, PHONES.alice, 'alice password', 'spoofed, 1.2.3.4')))
    await password(t, PHONES.alice, 'alice password', '10.9.9.1')
    await password(t, PHONES.alice, 'alice password', '1.2.3.4, 5.6.7.8')
  })

  it('when a trusted proxy forwards an IPv4-mapped IPv6 address, then it is the same client as the IPv4 address', async () => {
    const t = await setUp()

    await failure(password(t, PHONES.alice, 'wrong', '::ffff:192.0.2.77'))
    await failure(password(t, PHONES.alice, 'wrong', '192.0.2.77'))
    await failure(password(t, PHONES.alice, 'wrong', '[::ffff:192.0.2.77]'))

    expectLockedOut(await failure(password(t, PHONES.alice, 'alice password', '192.0.2.77')))
  })
})
