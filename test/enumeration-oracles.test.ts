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

const ATTACKER = '203.0.113.50'

function login(t: TestServer, phone: string, password: string, ip = ATTACKER) {
  return loginWithPassword(t, phone, password, ip)
}

describe('Combined calls that could reveal which numbers exist', () => {
  it('when an attacker registers a number with a password of their own and logs in with it, then a verified and an unknown number answer alike', async () => {
    const t = await startTestServer()
    await signUpVerified(t, PHONES.alice, 'the real password')
    t.clock.advance(30_000) // past the resend cooldown

    await t.client.register(
      { phoneNumber: PHONES.alice, password: 'attacker password' },
      t.as(ATTACKER),
    )
    await t.client.register(
      { phoneNumber: PHONES.bob, password: 'attacker password' },
      t.as(ATTACKER),
    )
    const known = await failure(login(t, PHONES.alice, 'attacker password'))
    const unknown = await failure(login(t, PHONES.bob, 'attacker password'))

    expect(known.code).toBe(status.FAILED_PRECONDITION)
    expect(visible(known)).toEqual(visible(unknown))
    // And the verified account is untouched: its own password still works.
    await login(t, PHONES.alice, 'the real password', '198.51.100.7')
  })

  it('when that decoy login is used between guesses, then it counts as a failure and resets nothing', async () => {
    const t = await startTestServer()
    await signUpVerified(t, PHONES.alice, 'the real password')
    t.clock.advance(30_000) // past the resend cooldown
    await failure(login(t, PHONES.alice, 'guess one'))
    await failure(login(t, PHONES.alice, 'guess two'))

    await t.client.register(
      { phoneNumber: PHONES.alice, password: 'attacker password' },
      t.as(ATTACKER),
    )
    const decoy = await failure(login(t, PHONES.alice, 'attacker password'))
    const locked = await failure(login(t, PHONES.alice, 'the real password'))

    expect(decoy.reason).toBe('PHONE_NOT_VERIFIED')
    expect(locked.code).toBe(status.RESOURCE_EXHAUSTED)
    expect(locked.reason).toBe('CLIENT_LOCKED_OUT')
  })

  it('when the sign-up code comes back from another client than the Register that chose the password, then the number is verified without that password', async () => {
    const t = await startTestServer()
    await t.client.register(
      { phoneNumber: PHONES.alice, password: 'planted password' },
      t.as(ATTACKER),
    )
    const code = t.sms.lastCodeFor(PHONES.alice, 'register')

    // The owner enters the code that reached their phone, from their own network.
    await t.client.verifyOtp({ phoneNumber: PHONES.alice, code }, t.as('198.51.100.7'))

    const planted = await failure(login(t, PHONES.alice, 'planted password'))
    expect(planted.reason).toBe('INVALID_CREDENTIALS')
    t.clock.advance(30_000) // past the resend cooldown
    await t.client.requestLoginCode({ phoneNumber: PHONES.alice }, t.as('198.51.100.7'))
    const loginCode = t.sms.lastCodeFor(PHONES.alice, 'login')
    await t.client.login(
      { phoneNumber: PHONES.alice, credential: { $case: 'code', value: loginCode } },
      t.as('198.51.100.7'),
    )
  })

  it('when the provider refuses a verified number, then every path for that number answers the same SMS_UNAVAILABLE', async () => {
    // The no-send paths replay the oldest kept send (the sign-up code, which went out).
    const t = await startTestServer({ random: () => 0 })
    await signUpVerified(t, PHONES.alice)
    t.clock.advance(60_000)

    t.sms.failNext()
    const real = await failure(t.client.requestLoginCode({ phoneNumber: PHONES.alice }))
    const noSend = await failure(t.client.register({ phoneNumber: PHONES.alice }))
    const again = await failure(t.client.requestLoginCode({ phoneNumber: PHONES.alice }))
    await t.client.requestLoginCode({ phoneNumber: PHONES.bob })

    expect(real.code).toBe(status.UNAVAILABLE)
    expect(visible(noSend)).toEqual(visible(real))
    expect(visible(again)).toEqual(visible(real))
    // The mark ends by itself; then the number is tried again.
    t.clock.advance(real.retryDelayMs ?? 0)
    await t.client.requestLoginCode({ phoneNumber: PHONES.alice })
    expect(t.sms.sentTo(PHONES.alice).filter((m) => m.purpose === 'login')).toHaveLength(1)
  })

  it('when the provider refuses sends (an outage), then a no-send path that replays a refused send fails as a real send would, and its number stays marked', async () => {
    // The no-send paths replay the newest kept send: the refused one.
    const t = await startTestServer({ random: () => 0.999 })
    await signUpVerified(t, PHONES.alice)
    t.clock.advance(60_000)
    t.sms.failNext()
    const real = await failure(t.client.requestLoginCode({ phoneNumber: PHONES.alice }))

    const unknown = await failure(t.client.requestLoginCode({ phoneNumber: PHONES.bob }))
    t.sms.failNext(0)
    const unknownAgain = await failure(t.client.register({ phoneNumber: PHONES.bob }))

    expect(visible(unknown)).toEqual(visible(real))
    // Marked like a refused real send: the send path for it answers alike, nothing is sent.
    expect(visible(unknownAgain)).toEqual(visible(real))
    expect(t.sms.sentTo(PHONES.bob)).toEqual([])
  })

  it('when the provider refuses an unknown number, then its no-send path answers the same SMS_UNAVAILABLE as the send path did', async () => {
    const t = await startTestServer()

    t.sms.failNext()
    const real = await failure(t.client.register({ phoneNumber: PHONES.bob }))
    const noSend = await failure(t.client.requestLoginCode({ phoneNumber: PHONES.bob }))

    expect(real.reason).toBe('SMS_UNAVAILABLE')
    expect(visible(noSend)).toEqual(visible(real))
  })
})
