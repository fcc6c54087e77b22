import { status } from '@grpc/grpc-js'
import { describe, expect, it } from 'vitest'
import type { OtpAuthError } from '../src/client/otpauth-client.js'
import {
  failure,
  loginWithCode,
  loginWithPassword,
  PHONES,
  signUpVerified,
  startTestServer,
  wrong,
} from './harness.js'

const HOUR = 3_600_000
const COOLDOWN = 30_000

const IP = '198.51.100.40'

describe('Resend cooldown after a code is answered', () => {
  it('when VerifyOtp succeeds, then RequestLoginCode for the number at once is OK, sends a code that logs in, and starts a new cooldown', async () => {
    const t = await startTestServer()
    await t.client.register({ phoneNumber: PHONES.alice })
    t.clock.advance(5_000) // the user types the code in
    await t.client.verifyOtp({
      phoneNumber: PHONES.alice,
      code: t.sms.lastCodeFor(PHONES.alice, 'register'),
    })
    t.clock.advance(1) // and the app asks for a login code at once

    const sent = await t.client.requestLoginCode({ phoneNumber: PHONES.alice })

    expect(sent).toEqual({
      message: 'OTP sent to phone number',
      codeExpiresAt: new Date(t.clock.now() + 5 * 60_000),
      resendAvailableAt: new Date(t.clock.now() + COOLDOWN),
    })
    const code = t.sms.lastCodeFor(PHONES.alice, 'login')
    t.clock.advance(1_000)
    const again = await failure(t.client.requestLoginCode({ phoneNumber: PHONES.alice }))
    expect(again.code).toBe(status.RESOURCE_EXHAUSTED)
    expect(again.reason).toBe('RESEND_TOO_SOON')
    expect(again.retryDelayMs).toBe(COOLDOWN - 1_000)
    await loginWithCode(t, PHONES.alice, code, IP)
  })

  it('when the next code goes out in the same millisecond as the answer, then it still starts a cooldown, as its resend_available_at says', async () => {
    const t = await startTestServer()
    await t.client.register({ phoneNumber: PHONES.alice })
    await t.client.verifyOtp({
      phoneNumber: PHONES.alice,
      code: t.sms.lastCodeFor(PHONES.alice, 'register'),
    })
    const sent = await t.client.requestLoginCode({ phoneNumber: PHONES.alice })

    const [again] = await Promise.allSettled([
      t.client.requestLoginCode({ phoneNumber: PHONES.alice }),
    ])

    expect(sent.resendAvailableAt).toEqual(new Date(t.clock.now() + COOLDOWN))
    expect(again.status === 'rejected' ? (again.reason as OtpAuthError).reason : 'OK').toBe(
      'RESEND_TOO_SOON',
    )
    expect(t.sms.sentTo(PHONES.alice).filter((m) => m.purpose === 'login')).toHaveLength(1)
  })

  it('when a login code logs in, then the cooldown for that number ends; a password login does not end it', async () => {
    const t = await startTestServer()
    await signUpVerified(t, PHONES.alice, 'alice password')
    // (1 ms on, so this send is plainly after the sign-up code was answered.)
    t.clock.advance(1)
    await t.client.requestLoginCode({ phoneNumber: PHONES.alice })
    const code = t.sms.lastCodeFor(PHONES.alice, 'login')
    t.clock.advance(5_000)
    await loginWithPassword(t, PHONES.alice, 'alice password', '198.51.100.41')
    const afterPassword = await failure(t.client.requestLoginCode({ phoneNumber: PHONES.alice }))
    expect(afterPassword.reason).toBe('RESEND_TOO_SOON')
    expect(afterPassword.retryDelayMs).toBe(COOLDOWN - 5_000)

    await loginWithCode(t, PHONES.alice, code, IP)

    await t.client.requestLoginCode({ phoneNumber: PHONES.alice })
    expect(t.sms.sentTo(PHONES.alice).filter((m) => m.purpose === 'login')).toHaveLength(2)
  })

  it('when a wrong code is given, then the cooldown holds (VerifyOtp and Login alike)', async () => {
    const t = await startTestServer()
    await signUpVerified(t, PHONES.bob)
    t.clock.advance(COOLDOWN)
    await t.client.register({ phoneNumber: PHONES.alice })
    const signUpCode = t.sms.lastCodeFor(PHONES.alice, 'register')
    await t.client.requestLoginCode({ phoneNumber: PHONES.bob })
    const loginCode = t.sms.lastCodeFor(PHONES.bob, 'login')
    t.clock.advance(10_000)

    await failure(
      t.client.verifyOtp({ phoneNumber: PHONES.alice, code: wrong(signUpCode) }, t.as('192.0.2.1')),
    )
    await failure(loginWithCode(t, PHONES.bob, wrong(loginCode), '192.0.2.2'))

    const register = await failure(t.client.register({ phoneNumber: PHONES.alice }))
    const login = await failure(t.client.requestLoginCode({ phoneNumber: PHONES.bob }))
    expect([register.reason, register.retryDelayMs]).toEqual(['RESEND_TOO_SOON', COOLDOWN - 10_000])
    expect([login.reason, login.retryDelayMs]).toEqual(['RESEND_TOO_SOON', COOLDOWN - 10_000])
    // The codes themselves still work after the wrong tries.
    await t.client.verifyOtp({ phoneNumber: PHONES.alice, code: signUpCode })
    await loginWithCode(t, PHONES.bob, loginCode, IP)
  })

  it("when one number's code is answered, then only that number's cooldown ends", async () => {
    const t = await startTestServer()
    await t.client.register({ phoneNumber: PHONES.alice })
    await t.client.register({ phoneNumber: PHONES.bob })

    await t.client.verifyOtp({
      phoneNumber: PHONES.bob,
      code: t.sms.lastCodeFor(PHONES.bob, 'register'),
    })

    const alice = await failure(t.client.register({ phoneNumber: PHONES.alice }))
    expect([alice.reason, alice.retryDelayMs]).toEqual(['RESEND_TOO_SOON', COOLDOWN])
    await t.client.requestLoginCode({ phoneNumber: PHONES.bob })
  })

  it('when the cooldown keeps ending, then the hourly per-number cap still counts every send', async () => {
    const t = await startTestServer()
    const start = t.clock.now()
    await signUpVerified(t, PHONES.alice)
    // Sends 2 to 5, each right after the previous code logged in.
    for (let i = 0; i < 4; i += 1) {
      await t.client.requestLoginCode({ phoneNumber: PHONES.alice })
      await loginWithCode(t, PHONES.alice, t.sms.lastCodeFor(PHONES.alice, 'login'), IP)
    }

    const err = await failure(t.client.requestLoginCode({ phoneNumber: PHONES.alice }))

    expect(err.code).toBe(status.RESOURCE_EXHAUSTED)
    expect(err.reason).toBe('NUMBER_SEND_LIMIT')
    expect(err.retryDelayMs).toBe(start + HOUR - t.clock.now())
    expect(t.sms.sentTo(PHONES.alice)).toHaveLength(5)
    t.clock.advance(HOUR - 1)
    const still = await failure(t.client.requestLoginCode({ phoneNumber: PHONES.alice }))
    expect(still.reason).toBe('NUMBER_SEND_LIMIT')
    t.clock.advance(1)
    await t.client.requestLoginCode({ phoneNumber: PHONES.alice })
  })

  it('when ChangePhoneNumber succeeds, then the new number can get a login code at once', async () => {
    const t = await startTestServer()
    await signUpVerified(t, PHONES.alice, 'alice password')
    const session = await loginWithPassword(t, PHONES.alice, 'alice password', '198.51.100.42')
    await t.client.requestPhoneChange({
      sessionToken: session.sessionToken,
      newPhoneNumber: PHONES.carol,
    })
    const before = await failure(t.client.requestLoginCode({ phoneNumber: PHONES.carol }))
    expect(before.reason).toBe('RESEND_TOO_SOON')

    await t.client.changePhoneNumber({
      sessionToken: session.sessionToken,
      newPhoneNumber: PHONES.carol,
      code: t.sms.lastCodeFor(PHONES.carol, 'phone_change'),
    })

    await t.client.requestLoginCode({ phoneNumber: PHONES.carol })
    await loginWithCode(t, PHONES.carol, t.sms.lastCodeFor(PHONES.carol, 'login'), IP)
  })
})
