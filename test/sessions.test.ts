import { status } from '@grpc/grpc-js'
import { describe, expect, it } from 'vitest'
import {
  expectSessionInvalid,
  failure,
  PHONES,
  signUpVerified,
  startTestServer,
  type TestServer,
} from './harness.js'

const DAY = 86_400_000

async function loggedIn(t: TestServer, phone: string = PHONES.alice) {
  await signUpVerified(t, phone, 'session password')
  return t.client.login({
    phoneNumber: phone,
    credential: { $case: 'password', value: 'session password' },
  })
}

describe('Sessions', () => {
  it('when a live token is validated, then its user id, E.164 phone, expiry, session id and login time come back', async () => {
    const t = await startTestServer({ config: { defaultRegion: 'GB' } })
    await t.client.register({ phoneNumber: '07911 123456', password: 'session password' })
    await t.client.verifyOtp({ phoneNumber: '07911123456', code: t.sms.lastCodeFor(PHONES.carol) })
    const login = await t.client.login({
      phoneNumber: '+44 7911 123456',
      credential: { $case: 'password', value: 'session password' },
    })

    const res = await t.client.validateSession({ sessionToken: login.sessionToken })

    expect(res).toEqual({
      userId: login.userId,
      phoneNumber: PHONES.carol,
      expiresAt: new Date(t.clock.now() + DAY),
      sessionId: expect.stringMatching(
        /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
      ) as string,
      authenticatedAt: new Date(t.clock.now()),
    })
  })

  it('when 24 h have passed, then the session is UNAUTHENTICATED SESSION_INVALID', async () => {
    const t = await startTestServer()
    const login = await loggedIn(t)

    t.clock.advance(DAY - 1)
    await t.client.validateSession({ sessionToken: login.sessionToken })
    t.clock.advance(1)
    const err = await failure(t.client.validateSession({ sessionToken: login.sessionToken }))

    expectSessionInvalid(err)
    expect(err.message).toBe('session is unknown, expired or ended')
  })

  it('when a well-formed token was never issued, then it is the same SESSION_INVALID as an ended one', async () => {
    const t = await startTestServer()
    const login = await loggedIn(t)
    await t.client.logout({ sessionToken: login.sessionToken })

    const ended = await failure(t.client.validateSession({ sessionToken: login.sessionToken }))
    const unknown = await failure(t.client.validateSession({ sessionToken: 'A'.repeat(43) }))

    expectSessionInvalid(ended)
    expectSessionInvalid(unknown)
    expect(unknown.message).toBe(ended.message)
  })

  it('when the user logs out, then that session ends and other sessions of the user stay', async () => {
    const t = await startTestServer()
    const first = await loggedIn(t)
    const second = await t.client.login({
      phoneNumber: PHONES.alice,
      credential: { $case: 'password', value: 'session password' },
    })

    const res = await t.client.logout({ sessionToken: first.sessionToken })

    expect(res).toEqual({})
    expectSessionInvalid(
      await failure(t.client.validateSession({ sessionToken: first.sessionToken })),
    )
    const still = await t.client.validateSession({ sessionToken: second.sessionToken })
    expect(still.userId).toBe(first.userId)
  })

  it('when Logout is repeated, or given an unknown or expired token, then it still succeeds', async () => {
    const t = await startTestServer()
    const login = await loggedIn(t)

    await t.client.logout({ sessionToken: login.sessionToken })
    await t.client.logout({ sessionToken: login.sessionToken })
    await t.client.logout({ sessionToken: '_'.repeat(43) })
    const other = await t.client.login({
      phoneNumber: PHONES.alice,
      credential: { $case: 'password', value: 'session password' },
    })
    t.clock.advance(DAY)
    await t.client.logout({ sessionToken: other.sessionToken })
  })

  it('when a token is malformed, then ValidateSession is UNAUTHENTICATED INVALID_SESSION_TOKEN (no BadRequest) and Logout is OK', async () => {
    const t = await startTestServer()
    const login = await loggedIn(t)
    const malformed = [
      '',
      'short',
      login.sessionToken.slice(0, 42),
      `${login.sessionToken}A`,
      `${login.sessionToken.slice(0, 42)}=`,
      `${login.sessionToken.slice(0, 42)}+`,
      ` ${login.sessionToken.slice(1)}`,
      'x'.repeat(10_000),
    ]

    for (const sessionToken of malformed) {
      const err = await failure(t.client.validateSession({ sessionToken }))
      expect(err.code).toBe(status.UNAUTHENTICATED)
      expect(err.reason).toBe('INVALID_SESSION_TOKEN')
      expect(err.domain).toBe('otpauth')
      expect(err.violations).toEqual([])
      expect(await t.client.logout({ sessionToken })).toEqual({})
      expect(await t.client.logout({ sessionToken, allSessions: true })).toEqual({})
    }
    // None of that ended the real session.
    await t.client.validateSession({ sessionToken: login.sessionToken })
  })

  it('when the server restarts, then live sessions survive and ended ones stay ended', async () => {
    const t = await startTestServer()
    const kept = await loggedIn(t)
    const ended = await t.client.login({
      phoneNumber: PHONES.alice,
      credential: { $case: 'password', value: 'session password' },
    })
    await t.client.logout({ sessionToken: ended.sessionToken })

    const after = await t.restart()

    const res = await after.client.validateSession({ sessionToken: kept.sessionToken })
    expect(res.userId).toBe(kept.userId)
    expect(res.expiresAt).toEqual(kept.expiresAt)
    expectSessionInvalid(
      await failure(after.client.validateSession({ sessionToken: ended.sessionToken })),
    )
  })

  it('when two users are logged in, then each token names its own user', async () => {
    const t = await startTestServer()
    const alice = await loggedIn(t, PHONES.alice)
    const bob = await loggedIn(t, PHONES.bob)

    const a = await t.client.validateSession({ sessionToken: alice.sessionToken })
    const b = await t.client.validateSession({ sessionToken: bob.sessionToken })

    expect(a.phoneNumber).toBe(PHONES.alice)
    expect(b.phoneNumber).toBe(PHONES.bob)
    expect(a.userId).not.toBe(b.userId)
  })
})
