import { status } from '@grpc/grpc-js'
import { describe, expect, it } from 'vitest'
import { failure, PHONES, signUpVerified, startTestServer } from './harness.js'

describe('Register', () => {
  it('when a new number registers, then one 6-digit sign-up code is sent and the answer says so', async () => {
    const t = await startTestServer()

    const res = await t.client.register({ phoneNumber: PHONES.alice, password: 'correct horse' })

    expect(res.message).toBe('OTP sent to phone number')
    expect(res.codeExpiresAt?.getTime()).toBe(t.clock.now() + 300_000)
    expect(res.resendAvailableAt?.getTime()).toBe(t.clock.now() + 30_000)
    const sent = t.sms.sentTo(PHONES.alice)
    expect(sent).toHaveLength(1)
    expect(sent[0]?.purpose).toBe('register')
    expect(sent[0]?.code).toMatch(/^[0-9]{6}$/)
    expect(sent[0]?.text).toContain(sent[0]?.code)
  })

  it('when the number is written in national format with a default region, then it is normalised to E.164', async () => {
    const t = await startTestServer({ config: { defaultRegion: 'US' } })

    await t.client.register({ phoneNumber: '(415) 555-2671' })

    expect(t.sms.sentTo('+14155552671')).toHaveLength(1)
  })

  it('when the number cannot exist, then INVALID_ARGUMENT with a BadRequest field violation', async () => {
    const t = await startTestServer()

    for (const phoneNumber of ['', 'not a number', '+1000', '+10000000000', '1'.repeat(65)]) {
      const err = await failure(t.client.register({ phoneNumber }))
      expect(err.code).toBe(status.INVALID_ARGUMENT)
      expect(err.reason).toBe('INVALID_PHONE_NUMBER')
      expect(err.domain).toBe('otpauth')
      expect(err.violations[0]?.field).toBe('phone_number')
    }
    expect(t.sms.messages).toHaveLength(0)
  })

  it('when the password is too short or too long, then INVALID_ARGUMENT names the password field', async () => {
    const t = await startTestServer()

    for (const password of ['short', 'x'.repeat(129)]) {
      const err = await failure(t.client.register({ phoneNumber: PHONES.alice, password }))
      expect(err.code).toBe(status.INVALID_ARGUMENT)
      expect(err.reason).toBe('INVALID_PASSWORD')
      expect(err.violations).toEqual([
        {
          field: 'password',
          description: expect.any(String) as string,
          reason: 'INVALID_PASSWORD',
        },
      ])
    }
    await t.client.register({ phoneNumber: PHONES.alice, password: 'x'.repeat(128) })
  })

  it('when a verified number registers again, then the answer is the same, no SMS is sent and the password is unchanged', async () => {
    const t = await startTestServer()
    await signUpVerified(t, PHONES.alice, 'original password')
    const unknown = await t.client.register({ phoneNumber: PHONES.bob })
    t.clock.advance(60_000)
    const smsBefore = t.sms.messages.length

    const again = await t.client.register({
      phoneNumber: PHONES.alice,
      password: 'attacker password',
    })

    expect(again.message).toBe(unknown.message)
    expect(Object.keys(again).sort()).toEqual(Object.keys(unknown).sort())
    expect(t.sms.messages.length).toBe(smsBefore)
    await t.client.login({
      phoneNumber: PHONES.alice,
      credential: { $case: 'password', value: 'original password' },
    })
    const err = await failure(
      t.client.login(
        {
          phoneNumber: PHONES.alice,
          credential: { $case: 'password', value: 'attacker password' },
        },
        t.as('198.51.100.9'),
      ),
    )
    expect(err.code).toBe(status.UNAUTHENTICATED)
  })

  it('when two registrations race for one number, then one account and one valid code exist', async () => {
    const t = await startTestServer()

    const results = await Promise.allSettled(
      Array.from({ length: 8 }, () => t.client.register({ phoneNumber: PHONES.alice })),
    )

    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1)
    expect(t.sms.sentTo(PHONES.alice)).toHaveLength(1)
    await t.client.verifyOtp({ phoneNumber: PHONES.alice, code: t.sms.lastCodeFor(PHONES.alice) })
  })
})
