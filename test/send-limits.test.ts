import { status } from '@grpc/grpc-js'
import { describe, expect, it } from 'vitest'
import { failure, PHONES, signUpVerified, startTestServer, visible } from './harness.js'

const HOUR = 3_600_000

describe('Send limits', () => {
  it('when a code is asked again within 30 s, then RESOURCE_EXHAUSTED RESEND_TOO_SOON with the seconds left', async () => {
    const t = await startTestServer()
    await t.client.register({ phoneNumber: PHONES.alice })
    t.clock.advance(12_000)

    const err = await failure(t.client.register({ phoneNumber: PHONES.alice }))

    expect(err.code).toBe(status.RESOURCE_EXHAUSTED)
    expect(err.reason).toBe('RESEND_TOO_SOON')
    expect(err.domain).toBe('otpauth')
    expect(err.retryDelayMs).toBe(18_000)
    expect(err.errorMetadata).toEqual({ retryAfterSeconds: '18' })
    expect(t.sms.sentTo(PHONES.alice)).toHaveLength(1)

    t.clock.advance(18_000)
    await t.client.register({ phoneNumber: PHONES.alice })
    expect(t.sms.sentTo(PHONES.alice)).toHaveLength(2)
  })

  it('when the cooldown started with Register and its code is not answered, then it also holds for RequestLoginCode on that number', async () => {
    const t = await startTestServer()
    await t.client.register({ phoneNumber: PHONES.alice })

    const err = await failure(t.client.requestLoginCode({ phoneNumber: PHONES.alice }))

    expect(err.reason).toBe('RESEND_TOO_SOON')
    expect(err.retryDelayMs).toBe(30_000)
  })

  it("when another number asks during one number's cooldown, then it is not held up", async () => {
    const t = await startTestServer()
    await t.client.register({ phoneNumber: PHONES.alice })

    await t.client.register({ phoneNumber: PHONES.bob })

    expect(t.sms.sentTo(PHONES.bob)).toHaveLength(1)
  })

  it('when 5 codes went to one number within an hour, then the 6th is NUMBER_SEND_LIMIT until the oldest is an hour old', async () => {
    const t = await startTestServer()
    const start = t.clock.now()
    for (let i = 0; i < 5; i += 1) {
      // From a different address each time: this is the per-number limit, not the per-client one.
      await t.client.register({ phoneNumber: PHONES.alice }, t.as(`198.51.100.${i}`))
      t.clock.advance(30_000)
    }

    const err = await failure(
      t.client.register({ phoneNumber: PHONES.alice }, t.as('198.51.100.50')),
    )

    expect(err.code).toBe(status.RESOURCE_EXHAUSTED)
    expect(err.reason).toBe('NUMBER_SEND_LIMIT')
    expect(err.domain).toBe('otpauth')
    expect(err.retryDelayMs).toBe(start + HOUR - t.clock.now())
    expect(t.sms.sentTo(PHONES.alice)).toHaveLength(5)

    t.clock.advance(start + HOUR - t.clock.now() - 1)
    const stillLimited = await failure(t.client.register({ phoneNumber: PHONES.alice }))
    expect(stillLimited.reason).toBe('NUMBER_SEND_LIMIT')
    t.clock.advance(1)
    await t.client.register({ phoneNumber: PHONES.alice })
    expect(t.sms.sentTo(PHONES.alice)).toHaveLength(6)
  })

  it('when the per-number cap is reached, then it counts Register and RequestLoginCode together and unknown numbers alike', async () => {
    const t = await startTestServer()
    await signUpVerified(t, PHONES.alice)
    for (let i = 0; i < 4; i += 1) {
      t.clock.advance(30_000)
      await t.client.requestLoginCode({ phoneNumber: PHONES.alice })
      await t.client.requestLoginCode({ phoneNumber: PHONES.carol })
    }
    // Carol is unknown: she got no SMS, but is throttled exactly like Alice after her 5th.
    t.clock.advance(30_000)
    await t.client.requestLoginCode({ phoneNumber: PHONES.carol })
    expect(t.sms.sentTo(PHONES.carol)).toEqual([])

    const real = await failure(t.client.requestLoginCode({ phoneNumber: PHONES.alice }))
    t.clock.advance(30_000)
    const fake = await failure(t.client.requestLoginCode({ phoneNumber: PHONES.carol }))

    expect(real.reason).toBe('NUMBER_SEND_LIMIT')
    expect(fake.reason).toBe('NUMBER_SEND_LIMIT')
    expect(fake.message).toBe(real.message)
  })

  it('when one client asks for more codes than its hourly cap, then CLIENT_SEND_LIMIT while other clients go on', async () => {
    const t = await startTestServer({ config: { sendsPerClientPerHour: 2 } })
    await t.client.register({ phoneNumber: PHONES.alice }, t.as('203.0.113.7'))
    await t.client.requestLoginCode({ phoneNumber: PHONES.bob }, t.as('203.0.113.7'))

    const err = await failure(t.client.register({ phoneNumber: PHONES.carol }, t.as('203.0.113.7')))

    expect(err.code).toBe(status.RESOURCE_EXHAUSTED)
    expect(err.reason).toBe('CLIENT_SEND_LIMIT')
    expect(err.domain).toBe('otpauth')
    // 2 per hour refills one send every 30 minutes.
    const retryMs = err.retryDelayMs ?? 0
    expect(retryMs).toBeGreaterThanOrEqual(HOUR / 2)
    expect(retryMs).toBeLessThan(HOUR / 2 + 1000)
    expect(t.sms.sentTo(PHONES.carol)).toEqual([])

    await t.client.register({ phoneNumber: PHONES.carol }, t.as('203.0.113.8'))
    expect(t.sms.sentTo(PHONES.carol)).toHaveLength(1)

    // Waiting exactly the advertised delay is enough.
    t.clock.advance(retryMs)
    await t.client.register({ phoneNumber: PHONES.dave }, t.as('203.0.113.7'))
  })

  it('when the SMS cannot be sent, then UNAVAILABLE SMS_UNAVAILABLE with a 10 s RetryInfo, the number is not tried again before then, and no cooldown was charged', async () => {
    const t = await startTestServer()
    t.sms.failNext()

    const err = await failure(t.client.register({ phoneNumber: PHONES.alice }))
    const early = await failure(t.client.register({ phoneNumber: PHONES.alice }))
    t.clock.advance(10_000)
    await t.client.register({ phoneNumber: PHONES.alice })

    expect(err.code).toBe(status.UNAVAILABLE)
    expect(err.reason).toBe('SMS_UNAVAILABLE')
    expect(err.domain).toBe('otpauth')
    expect(err.retryDelayMs).toBe(10_000)
    expect(visible(early)).toEqual(visible(err))
    // One attempt failed, the early retry never reached the provider, the last one went out.
    expect(t.sms.sentTo(PHONES.alice)).toHaveLength(1)
    await t.client.verifyOtp({ phoneNumber: PHONES.alice, code: t.sms.lastCodeFor(PHONES.alice) })
  })

  it('when a resend fails, then the previous code stays valid', async () => {
    const t = await startTestServer()
    await t.client.register({ phoneNumber: PHONES.alice })
    const first = t.sms.lastCodeFor(PHONES.alice)
    t.clock.advance(30_000)
    t.sms.failNext()

    const err = await failure(t.client.register({ phoneNumber: PHONES.alice }))

    expect(err.reason).toBe('SMS_UNAVAILABLE')
    await t.client.verifyOtp({ phoneNumber: PHONES.alice, code: first })
  })

  it('when a login code send fails, then UNAVAILABLE, the previous login code stays valid and a retry is not held up', async () => {
    const t = await startTestServer()
    await signUpVerified(t, PHONES.alice)
    t.clock.advance(30_000)
    await t.client.requestLoginCode({ phoneNumber: PHONES.alice })
    const first = t.sms.lastCodeFor(PHONES.alice, 'login')
    t.clock.advance(30_000)
    t.sms.failNext()

    const err = await failure(t.client.requestLoginCode({ phoneNumber: PHONES.alice }))

    expect(err.code).toBe(status.UNAVAILABLE)
    expect(err.reason).toBe('SMS_UNAVAILABLE')
    await t.client.login({ phoneNumber: PHONES.alice, credential: { $case: 'code', value: first } })
    // Not held up by the failed send's cooldown: only by the short delivery mark.
    t.clock.advance(err.retryDelayMs ?? 0)
    await t.client.requestLoginCode({ phoneNumber: PHONES.alice })
  })

  it('when many sends fail, then none of them count toward the per-number or per-client caps', async () => {
    const t = await startTestServer({ config: { sendsPerClientPerHour: 5 } })
    for (let i = 0; i < 10; i += 1) {
      t.sms.failNext()
      const err = await failure(
        t.client.register({ phoneNumber: PHONES.alice }, t.as('203.0.113.9')),
      )
      expect(err.reason).toBe('SMS_UNAVAILABLE')
      t.clock.advance(err.retryDelayMs ?? 0)
    }

    for (let i = 0; i < 5; i += 1) {
      await t.client.register({ phoneNumber: PHONES.alice }, t.as('203.0.113.9'))
      t.clock.advance(30_000)
    }

    expect(t.sms.sentTo(PHONES.alice)).toHaveLength(5)
  })
})
