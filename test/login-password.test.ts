import { status } from '@grpc/grpc-js'
import { describe, expect, it } from 'vitest'
import {
  failure,
  loginWithPassword,
  PHONES,
  signUpVerified,
  startTestServer,
  visible,
  type TestServer,
} from './harness.js'

function withPassword(t: TestServer, phone: string, password: string, ip = '203.0.113.1') {
  return loginWithPassword(t, phone, password, ip)
}

describe('Login with a password', () => {
  it('when the password is right, then a 43-character session token valid for 24 h is issued', async () => {
    const t = await startTestServer()
    await signUpVerified(t, PHONES.alice, 'correct horse battery')

    const res = await withPassword(t, PHONES.alice, 'correct horse battery')

    expect(res.message).toBe('Login successful')
    expect(res.sessionToken).toMatch(/^[A-Za-z0-9_-]{43}$/)
    expect(res.expiresAt?.getTime()).toBe(t.clock.now() + 24 * 3_600_000)
    expect(res.userId).toMatch(/^[0-9a-f-]{36}$/)
    const session = await t.client.validateSession({ sessionToken: res.sessionToken })
    expect(session.userId).toBe(res.userId)
    expect(session.phoneNumber).toBe(PHONES.alice)
  })

  it('when the user logs in twice, then each login gets its own token for the same user', async () => {
    const t = await startTestServer()
    await signUpVerified(t, PHONES.alice, 'correct horse battery')

    const a = await withPassword(t, PHONES.alice, 'correct horse battery')
    const b = await withPassword(t, PHONES.alice, 'correct horse battery')

    expect(a.sessionToken).not.toBe(b.sessionToken)
    expect(a.userId).toBe(b.userId)
  })

  it('when the password is wrong, the number unknown, or the account has no password, then the answers are identical UNAUTHENTICATED', async () => {
    const t = await startTestServer()
    await signUpVerified(t, PHONES.alice, 'correct horse battery')
    await signUpVerified(t, PHONES.bob)

    const wrongPassword = await failure(
      withPassword(t, PHONES.alice, 'wrong password', '203.0.113.1'),
    )
    const unknownNumber = await failure(
      withPassword(t, PHONES.carol, 'wrong password', '203.0.113.2'),
    )
    const noPassword = await failure(withPassword(t, PHONES.bob, 'wrong password', '203.0.113.3'))

    expect(wrongPassword.code).toBe(status.UNAUTHENTICATED)
    expect(wrongPassword.reason).toBe('INVALID_CREDENTIALS')
    expect(wrongPassword.domain).toBe('otpauth')
    expect(wrongPassword.message).toBe('invalid phone number or credentials')
    expect(visible(unknownNumber)).toEqual(visible(wrongPassword))
    expect(visible(noPassword)).toEqual(visible(wrongPassword))
  })

  it('when the password differs only in Unicode normalisation, then it is the same password', async () => {
    const t = await startTestServer()
    // "é" precomposed at sign-up, decomposed (e + combining acute) at login: NFKC makes them equal.
    await signUpVerified(t, PHONES.alice, 'caf\u00e9 au lait')

    await withPassword(t, PHONES.alice, 'cafe\u0301 au lait')
  })

  it('when the password is right but the number was never verified, then FAILED_PRECONDITION PHONE_NOT_VERIFIED', async () => {
    const t = await startTestServer()
    await t.client.register(
      { phoneNumber: PHONES.alice, password: 'correct horse battery' },
      t.as('203.0.113.1'),
    )

    const err = await failure(withPassword(t, PHONES.alice, 'correct horse battery'))

    expect(err.code).toBe(status.FAILED_PRECONDITION)
    expect(err.reason).toBe('PHONE_NOT_VERIFIED')
    expect(err.domain).toBe('otpauth')
    // And a wrong password on that pending number is the plain credential failure.
    const wrong = await failure(withPassword(t, PHONES.alice, 'not the password'))
    expect(wrong.reason).toBe('INVALID_CREDENTIALS')
  })

  it('when someone re-registers a pending number with their own password, then the password that counts is the one sent with the code that was verified', async () => {
    const t = await startTestServer()
    await t.client.register(
      { phoneNumber: PHONES.alice, password: 'victim password' },
      t.as('198.51.100.1'),
    )
    const victimCode = t.sms.lastCodeFor(PHONES.alice, 'register')

    // Within the cooldown the attacker cannot even replace the pending registration.
    const tooSoon = await failure(
      t.client.register(
        { phoneNumber: PHONES.alice, password: 'attacker password' },
        t.as('203.0.113.66'),
      ),
    )
    expect(tooSoon.reason).toBe('RESEND_TOO_SOON')

    // After it, the attacker's Register replaces the pending password, but the new code goes to
    // the victim's phone; when its SMS fails the victim's code stays the live one.
    t.clock.advance(30_000)
    t.sms.failNext()
    await failure(
      t.client.register(
        { phoneNumber: PHONES.alice, password: 'attacker password' },
        t.as('203.0.113.66'),
      ),
    )
    // The attacker cannot use the account while it is pending (their Register sent no code, so
    // their password is held nowhere)...
    const pending = await failure(
      withPassword(t, PHONES.alice, 'attacker password', '203.0.113.66'),
    )
    expect(pending.reason).toBe('INVALID_CREDENTIALS')

    // ...and once the victim verifies with their code, the victim's password is the one stored.
    await t.client.verifyOtp({ phoneNumber: PHONES.alice, code: victimCode }, t.as('198.51.100.1'))
    const attacker = await failure(
      withPassword(t, PHONES.alice, 'attacker password', '203.0.113.67'),
    )
    expect(attacker.code).toBe(status.UNAUTHENTICATED)
    expect(attacker.reason).toBe('INVALID_CREDENTIALS')
    await withPassword(t, PHONES.alice, 'victim password', '198.51.100.1')
  })

  it("when the victim registers again after an attacker did, then the victim's password wins on verification", async () => {
    const t = await startTestServer()
    await t.client.register({ phoneNumber: PHONES.alice, password: 'victim password' })
    t.clock.advance(30_000)
    await t.client.register(
      { phoneNumber: PHONES.alice, password: 'attacker password' },
      t.as('203.0.113.66'),
    )
    t.clock.advance(30_000)
    await t.client.register({ phoneNumber: PHONES.alice, password: 'victim password' })

    await t.client.verifyOtp({
      phoneNumber: PHONES.alice,
      code: t.sms.lastCodeFor(PHONES.alice, 'register'),
    })

    const attacker = await failure(
      withPassword(t, PHONES.alice, 'attacker password', '203.0.113.66'),
    )
    expect(attacker.reason).toBe('INVALID_CREDENTIALS')
    await withPassword(t, PHONES.alice, 'victim password')
  })

  it('when the credential oneof is missing, then INVALID_ARGUMENT MISSING_CREDENTIAL names the field', async () => {
    const t = await startTestServer()
    await signUpVerified(t, PHONES.alice, 'correct horse battery')

    const err = await failure(t.client.login({ phoneNumber: PHONES.alice }))

    expect(err.code).toBe(status.INVALID_ARGUMENT)
    expect(err.reason).toBe('MISSING_CREDENTIAL')
    expect(err.domain).toBe('otpauth')
    expect(err.violations).toEqual([
      {
        field: 'credential',
        description: expect.any(String) as string,
        reason: 'MISSING_CREDENTIAL',
      },
    ])
  })

  it('when the password is empty or over 128 characters, then INVALID_ARGUMENT names the password field and nothing is counted', async () => {
    const t = await startTestServer()
    await signUpVerified(t, PHONES.alice, 'correct horse battery')

    for (const password of ['', 'x'.repeat(129), 'x'.repeat(10_000)]) {
      const err = await failure(withPassword(t, PHONES.alice, password))
      expect(err.code).toBe(status.INVALID_ARGUMENT)
      expect(err.reason).toBe('INVALID_PASSWORD')
      expect(err.violations[0]?.field).toBe('password')
    }

    await withPassword(t, PHONES.alice, 'correct horse battery')
  })

  it('when the phone number is malformed, then INVALID_ARGUMENT names phone_number', async () => {
    const t = await startTestServer()

    const err = await failure(withPassword(t, 'call me maybe', 'whatever'))

    expect(err.code).toBe(status.INVALID_ARGUMENT)
    expect(err.reason).toBe('INVALID_PHONE_NUMBER')
    expect(err.violations[0]?.field).toBe('phone_number')
  })
})
