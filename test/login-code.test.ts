import { status } from '@grpc/grpc-js'
import { describe, expect, it } from 'vitest'
import { failure, PHONES, signUpVerified, startTestServer, type TestServer } from './harness.js'

function withCode(t: TestServer, phone: string, code: string, ip = '203.0.113.1') {
  return t.client.login(
    { phoneNumber: phone, credential: { $case: 'code', value: code } },
    t.as(ip),
  )
}

/** signs a number up and waits out the resend cooldown its sign-up code started. */
async function verifiedNumber(t: TestServer, phone: string): Promise<void> {
  await signUpVerified(t, phone)
  t.clock.advance(30_000)
}

describe('RequestLoginCode and Login with a code', () => {
  it('when a verified number asks for a login code, then one login code is sent and the answer says so', async () => {
    const t = await startTestServer()
    await verifiedNumber(t, PHONES.alice)
    const before = t.sms.messages.length

    const res = await t.client.requestLoginCode({ phoneNumber: PHONES.alice })

    expect(res.message).toBe('OTP sent to phone number')
    expect(res.codeExpiresAt?.getTime()).toBe(t.clock.now() + 300_000)
    expect(res.resendAvailableAt?.getTime()).toBe(t.clock.now() + 30_000)
    expect(t.sms.messages.length).toBe(before + 1)
    const sms = t.sms.messages.at(-1)
    expect(sms?.purpose).toBe('login')
    expect(sms?.phone).toBe(PHONES.alice)
    expect(sms?.code).toMatch(/^[0-9]{6}$/)
    expect(sms?.text).toContain(sms?.code)
  })

  it('when an unknown or an unverified number asks, then the answer is identical and no SMS is sent', async () => {
    const t = await startTestServer()
    await t.client.register({ phoneNumber: PHONES.bob })
    await verifiedNumber(t, PHONES.alice)
    const before = t.sms.messages.length

    const verified = await t.client.requestLoginCode({ phoneNumber: PHONES.alice })
    const unverified = await t.client.requestLoginCode({ phoneNumber: PHONES.bob })
    const unknown = await t.client.requestLoginCode({ phoneNumber: PHONES.carol })

    expect(t.sms.messages.length).toBe(before + 1)
    expect(t.sms.sentTo(PHONES.carol)).toEqual([])
    expect(t.sms.sentTo(PHONES.bob).filter((m) => m.purpose === 'login')).toEqual([])
    // The clock did not move, so every field (times included) must match exactly.
    expect(unverified).toEqual(verified)
    expect(unknown).toEqual(verified)
  })

  it('when an unknown number asks twice within the cooldown, then it is throttled like a real one', async () => {
    const t = await startTestServer()
    await verifiedNumber(t, PHONES.alice)
    await t.client.requestLoginCode({ phoneNumber: PHONES.alice })
    await t.client.requestLoginCode({ phoneNumber: PHONES.carol })

    const real = await failure(t.client.requestLoginCode({ phoneNumber: PHONES.alice }))
    const fake = await failure(t.client.requestLoginCode({ phoneNumber: PHONES.carol }))

    expect(real.reason).toBe('RESEND_TOO_SOON')
    const seen = (e: typeof real) => [e.code, e.message, e.reason, e.errorMetadata, e.retryDelayMs]
    expect(seen(fake)).toEqual(seen(real))
  })

  it('when the login code is given, then a session is issued, and the code works only once', async () => {
    const t = await startTestServer()
    await verifiedNumber(t, PHONES.alice)
    await t.client.requestLoginCode({ phoneNumber: PHONES.alice })
    const code = t.sms.lastCodeFor(PHONES.alice, 'login')

    const res = await withCode(t, PHONES.alice, code)

    expect(res.message).toBe('Login successful')
    expect(res.sessionToken).toMatch(/^[A-Za-z0-9_-]{43}$/)
    expect(res.expiresAt?.getTime()).toBe(t.clock.now() + 86_400_000)
    const session = await t.client.validateSession({ sessionToken: res.sessionToken })
    expect(session.phoneNumber).toBe(PHONES.alice)

    const again = await failure(withCode(t, PHONES.alice, code, '203.0.113.2'))
    expect(again.code).toBe(status.UNAUTHENTICATED)
    expect(again.reason).toBe('INVALID_CREDENTIALS')
    expect(again.message).toBe('invalid phone number or credentials')
  })

  it('when the login code is wrong or expired, then UNAUTHENTICATED with the credential message', async () => {
    const t = await startTestServer({ randomInt: () => 555_555 })
    await verifiedNumber(t, PHONES.alice)
    await t.client.requestLoginCode({ phoneNumber: PHONES.alice })

    const wrong = await failure(withCode(t, PHONES.alice, '555556', '203.0.113.1'))
    t.clock.advance(300_000)
    const expired = await failure(withCode(t, PHONES.alice, '555555', '203.0.113.2'))

    for (const err of [wrong, expired]) {
      expect(err.code).toBe(status.UNAUTHENTICATED)
      expect(err.reason).toBe('INVALID_CREDENTIALS')
      expect(err.message).toBe('invalid phone number or credentials')
    }
  })

  it('when a code is given for a number that never got one, then it is the same credential failure', async () => {
    const t = await startTestServer()

    const err = await failure(withCode(t, PHONES.carol, '123456'))

    expect(err.code).toBe(status.UNAUTHENTICATED)
    expect(err.reason).toBe('INVALID_CREDENTIALS')
  })

  it('when a login code is burned by 5 wrong tries, then the right one fails too', async () => {
    const t = await startTestServer({ randomInt: () => 246_810 })
    await verifiedNumber(t, PHONES.alice)
    await t.client.requestLoginCode({ phoneNumber: PHONES.alice })

    for (let i = 0; i < 5; i += 1) {
      await failure(withCode(t, PHONES.alice, '000000', `203.0.113.${i}`))
    }

    const err = await failure(withCode(t, PHONES.alice, '246810', '203.0.113.99'))
    expect(err.reason).toBe('INVALID_CREDENTIALS')
  })

  it('when the login code is malformed, then INVALID_ARGUMENT names the code field', async () => {
    const t = await startTestServer()

    for (const code of ['', '12345', '1234567', 'abcdef']) {
      const err = await failure(withCode(t, PHONES.alice, code))
      expect(err.code).toBe(status.INVALID_ARGUMENT)
      expect(err.reason).toBe('INVALID_CODE_FORMAT')
      expect(err.violations[0]?.field).toBe('code')
    }
  })

  it('when the phone number of RequestLoginCode is malformed, then INVALID_ARGUMENT and nothing is sent', async () => {
    const t = await startTestServer()

    const err = await failure(t.client.requestLoginCode({ phoneNumber: '12' }))

    expect(err.code).toBe(status.INVALID_ARGUMENT)
    expect(err.reason).toBe('INVALID_PHONE_NUMBER')
    expect(err.violations[0]?.field).toBe('phone_number')
    expect(t.sms.messages).toEqual([])
  })
})
