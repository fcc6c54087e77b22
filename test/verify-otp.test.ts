import { status } from '@grpc/grpc-js'
import { describe, expect, it } from 'vitest'
import type { OtpAuthError } from '../src/client/otpauth-client.js'
import { failure, PHONES, startTestServer, wrong, type TestServer } from './harness.js'

const INVALID_CREDENTIALS = {
  code: status.UNAUTHENTICATED,
  message: 'invalid phone number or credentials',
  reason: 'INVALID_CREDENTIALS',
  domain: 'otpauth',
}

/** The shape every credential failure must have, so answers never tell which part was wrong. */
function shapeOf(err: OtpAuthError): Record<string, unknown> {
  return { code: err.code, message: err.message, reason: err.reason, domain: err.domain }
}

async function registerPending(t: TestServer, phone: string = PHONES.alice): Promise<string> {
  await t.client.register({ phoneNumber: phone, password: 'victim password' })
  return t.sms.lastCodeFor(phone, 'register')
}

describe('VerifyOtp', () => {
  it('when the right code is given, then the number is verified and can log in', async () => {
    const t = await startTestServer()
    const code = await registerPending(t)

    const res = await t.client.verifyOtp({ phoneNumber: PHONES.alice, code })

    expect(res).toEqual({ message: 'OTP verified successfully, proceed to login' })
    const login = await t.client.login({
      phoneNumber: PHONES.alice,
      credential: { $case: 'password', value: 'victim password' },
    })
    expect(login.message).toBe('Login successful')
  })

  it('when the number is written in another notation, then the same code still verifies it', async () => {
    const t = await startTestServer()
    const code = await registerPending(t)

    await t.client.verifyOtp({ phoneNumber: '+1 (415) 555-2671', code: ` ${code} ` })
  })

  it('when a wrong, an expired or a reused code is given, then each is UNAUTHENTICATED with the same message and reason', async () => {
    const t = await startTestServer()
    const code = await registerPending(t)

    const wrongCode = await failure(
      t.client.verifyOtp({ phoneNumber: PHONES.alice, code: wrong(code) }, t.as('192.0.2.1')),
    )
    await t.client.verifyOtp({ phoneNumber: PHONES.alice, code })
    const reused = await failure(
      t.client.verifyOtp({ phoneNumber: PHONES.alice, code }, t.as('192.0.2.2')),
    )

    const bobCode = await registerPending(t, PHONES.bob)
    t.clock.advance(5 * 60_000 + 1)
    const expired = await failure(
      t.client.verifyOtp({ phoneNumber: PHONES.bob, code: bobCode }, t.as('192.0.2.3')),
    )
    const neverSent = await failure(
      t.client.verifyOtp({ phoneNumber: PHONES.carol, code: '123456' }, t.as('192.0.2.4')),
    )

    for (const err of [wrongCode, reused, expired, neverSent]) {
      expect(shapeOf(err)).toEqual(INVALID_CREDENTIALS)
      expect(err.retryDelayMs).toBeUndefined()
      expect(err.violations).toEqual([])
    }
    // The expired code left the number pending, and the password given with it went with it: a
    // password login is the plain credential failure.
    const pending = await failure(
      t.client.login({
        phoneNumber: PHONES.bob,
        credential: { $case: 'password', value: 'victim password' },
      }),
    )
    expect(pending.reason).toBe('INVALID_CREDENTIALS')
  })

  it('when the code is given just before its 5 minutes are up, then it still verifies', async () => {
    const t = await startTestServer()
    const code = await registerPending(t)

    t.clock.advance(5 * 60_000 - 1)

    await t.client.verifyOtp({ phoneNumber: PHONES.alice, code })
  })

  it('when 5 wrong codes were tried, then the code is burned and even the right code fails', async () => {
    const t = await startTestServer()
    const code = await registerPending(t)

    // From different addresses, so the per-client lockout (3) does not hide the per-code limit.
    for (let i = 0; i < 5; i += 1) {
      const err = await failure(
        t.client.verifyOtp({ phoneNumber: PHONES.alice, code: wrong(code) }, t.as(`192.0.2.${i}`)),
      )
      expect(err.reason).toBe('INVALID_CREDENTIALS')
    }

    const burned = await failure(
      t.client.verifyOtp({ phoneNumber: PHONES.alice, code }, t.as('192.0.2.100')),
    )
    expect(shapeOf(burned)).toEqual(INVALID_CREDENTIALS)
  })

  it('when 4 wrong codes were tried, then the right code still verifies on the fifth try', async () => {
    const t = await startTestServer()
    const code = await registerPending(t)

    for (let i = 0; i < 4; i += 1) {
      await failure(
        t.client.verifyOtp({ phoneNumber: PHONES.alice, code: wrong(code) }, t.as(`192.0.2.${i}`)),
      )
    }

    await t.client.verifyOtp({ phoneNumber: PHONES.alice, code }, t.as('192.0.2.100'))
  })

  it('when a new code is sent, then it replaces the old one', async () => {
    const t = await startTestServer()
    const first = await registerPending(t)
    t.clock.advance(30_000)
    const second = await registerPending(t)
    expect(t.sms.sentTo(PHONES.alice)).toHaveLength(2)

    if (first !== second) {
      const err = await failure(t.client.verifyOtp({ phoneNumber: PHONES.alice, code: first }))
      expect(shapeOf(err)).toEqual(INVALID_CREDENTIALS)
    }
    await t.client.verifyOtp({ phoneNumber: PHONES.alice, code: second })
  })

  it('when a new code is sent after a burned one, then the new code has a fresh set of tries', async () => {
    const codes = ['111111', '222222']
    const t = await startTestServer({ randomInt: () => Number(codes.shift() ?? '999999') })
    await registerPending(t)
    for (let i = 0; i < 5; i += 1) {
      await failure(
        t.client.verifyOtp({ phoneNumber: PHONES.alice, code: '000000' }, t.as(`192.0.2.${i}`)),
      )
    }
    t.clock.advance(30_000)
    await registerPending(t)

    await t.client.verifyOtp({ phoneNumber: PHONES.alice, code: '222222' })
  })

  it('when a code with a leading zero is drawn, then it is sent and accepted with all 6 digits', async () => {
    const t = await startTestServer({ randomInt: () => 42 })

    const code = await registerPending(t)

    expect(code).toBe('000042')
    await t.client.verifyOtp({ phoneNumber: PHONES.alice, code: '000042' })
  })

  it('when the code was sent to another number, then it does not verify this one', async () => {
    const t = await startTestServer({ randomInt: () => 123_456 })
    await registerPending(t, PHONES.alice)
    await registerPending(t, PHONES.bob)

    await t.client.verifyOtp({ phoneNumber: PHONES.alice, code: '123456' })
    const err = await failure(
      t.client.verifyOtp({ phoneNumber: PHONES.carol, code: '123456' }, t.as('192.0.2.9')),
    )
    expect(shapeOf(err)).toEqual(INVALID_CREDENTIALS)
    await t.client.verifyOtp({ phoneNumber: PHONES.bob, code: '123456' })
  })

  it('when a sign-up code is used to log in, then it fails and the code still verifies the number', async () => {
    const t = await startTestServer({ randomInt: () => 424_242 })
    await registerPending(t)

    const asLogin = await failure(
      t.client.login({ phoneNumber: PHONES.alice, credential: { $case: 'code', value: '424242' } }),
    )
    expect(shapeOf(asLogin)).toEqual(INVALID_CREDENTIALS)

    await t.client.verifyOtp({ phoneNumber: PHONES.alice, code: '424242' })
  })

  it('when a login code is used to verify sign-up, then it fails and the code still logs in', async () => {
    const t = await startTestServer({ randomInt: () => 424_242 })
    await registerPending(t)
    await t.client.verifyOtp({ phoneNumber: PHONES.alice, code: '424242' })
    t.clock.advance(30_000)
    await t.client.requestLoginCode({ phoneNumber: PHONES.alice })
    expect(t.sms.lastCodeFor(PHONES.alice, 'login')).toBe('424242')

    const asSignUp = await failure(
      t.client.verifyOtp({ phoneNumber: PHONES.alice, code: '424242' }),
    )
    expect(shapeOf(asSignUp)).toEqual(INVALID_CREDENTIALS)

    const session = await t.client.login({
      phoneNumber: PHONES.alice,
      credential: { $case: 'code', value: '424242' },
    })
    expect(session.message).toBe('Login successful')
  })

  it('when the code is malformed, then INVALID_ARGUMENT names the code field', async () => {
    const t = await startTestServer()
    await registerPending(t)

    for (const code of ['', '12345', '1234567', '12a456', 'abcdef', '12 456', '١٢٣٤٥٦', '+12345']) {
      const err = await failure(t.client.verifyOtp({ phoneNumber: PHONES.alice, code }))
      expect(err.code).toBe(status.INVALID_ARGUMENT)
      expect(err.reason).toBe('INVALID_CODE_FORMAT')
      expect(err.domain).toBe('otpauth')
      expect(err.violations).toEqual([
        {
          field: 'code',
          description: expect.any(String) as string,
          reason: 'INVALID_CODE_FORMAT',
        },
      ])
    }
  })

  it('when malformed codes are sent many times, then they count neither toward the code limit nor the lockout', async () => {
    const t = await startTestServer()
    const code = await registerPending(t)

    for (let i = 0; i < 8; i += 1) {
      const err = await failure(t.client.verifyOtp({ phoneNumber: PHONES.alice, code: 'x' }))
      expect(err.reason).toBe('INVALID_CODE_FORMAT')
    }

    await t.client.verifyOtp({ phoneNumber: PHONES.alice, code })
  })

  it('when the phone number is malformed, then INVALID_ARGUMENT names phone_number and nothing is counted', async () => {
    const t = await startTestServer()
    const code = await registerPending(t)

    for (const phoneNumber of ['', 'abc', '+1000', '+1'.padEnd(70, '5')]) {
      const err = await failure(t.client.verifyOtp({ phoneNumber, code: '123456' }))
      expect(err.code).toBe(status.INVALID_ARGUMENT)
      expect(err.reason).toBe('INVALID_PHONE_NUMBER')
      expect(err.violations[0]?.field).toBe('phone_number')
    }

    await t.client.verifyOtp({ phoneNumber: PHONES.alice, code })
  })

  it('when 16 copies of the right code race, then exactly one verifies', async () => {
    const t = await startTestServer()
    const code = await registerPending(t)

    const results = await Promise.allSettled(
      Array.from({ length: 16 }, (_, i) =>
        t.client.verifyOtp({ phoneNumber: PHONES.alice, code }, t.as(`192.0.2.${i}`)),
      ),
    )

    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1)
  })
})
