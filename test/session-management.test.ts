import { randomUUID } from 'node:crypto'
import { status } from '@grpc/grpc-js'
import { describe, expect, it } from 'vitest'
import type { OtpAuthError } from '../src/client/otpauth-client.js'
import {
  expectSessionInvalid,
  failure,
  loginWithPassword,
  PHONES,
  signUpVerified,
  startTestServer,
  visible,
  type TestServer,
} from './harness.js'

const DAY = 86_400_000
const PASSWORD = 'session password'
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

function login(t: TestServer, ip: string, phone: string = PHONES.alice) {
  return loginWithPassword(t, phone, PASSWORD, ip)
}

/** idOf is the public session id of a live token, as ValidateSession answers it. */
async function idOf(t: TestServer, sessionToken: string): Promise<string> {
  return (await t.client.validateSession({ sessionToken })).sessionId
}

async function expectEnded(t: TestServer, sessionToken: string): Promise<void> {
  expectSessionInvalid(await failure(t.client.validateSession({ sessionToken })))
}

/** Tokens that are not even well-formed (a real one is 43 base64url characters). */
function malformedTokens(real: string): string[] {
  return [
    '',
    'short',
    real.slice(0, 42),
    `${real}A`,
    `${real.slice(0, 42)}=`,
    `${real.slice(0, 42)}+`,
    ` ${real.slice(1)}`,
    'x'.repeat(10_000),
  ]
}

describe('Session management', () => {
  describe('ValidateSession', () => {
    it('when a live token is validated, then it names its session by a UUID that is not the token, and authenticatedAt is the login time', async () => {
      const t = await startTestServer()
      await signUpVerified(t, PHONES.alice, PASSWORD)
      const loginAt = t.clock.now()
      const first = await login(t, '198.51.100.1')
      t.clock.advance(60_000)
      const second = await login(t, '198.51.100.1')
      t.clock.advance(5 * 60_000)

      const a = await t.client.validateSession({ sessionToken: first.sessionToken })
      const again = await t.client.validateSession({ sessionToken: first.sessionToken })
      const b = await t.client.validateSession({ sessionToken: second.sessionToken })

      expect(a).toEqual({
        userId: first.userId,
        phoneNumber: PHONES.alice,
        expiresAt: new Date(loginAt + DAY),
        sessionId: expect.stringMatching(UUID) as string,
        authenticatedAt: new Date(loginAt),
      })
      expect(a.sessionId).not.toBe(first.sessionToken)
      expect(first.sessionToken).not.toContain(a.sessionId)
      expect(again.sessionId).toBe(a.sessionId)
      expect(b.sessionId).toMatch(UUID)
      expect(b.sessionId).not.toBe(a.sessionId)
      expect(b.authenticatedAt).toEqual(new Date(loginAt + 60_000))
    })

    it('when the session began with a code login, then authenticatedAt is the time of that login', async () => {
      const t = await startTestServer()
      await signUpVerified(t, PHONES.alice)
      t.clock.advance(30_000)
      await t.client.requestLoginCode({ phoneNumber: PHONES.alice })
      t.clock.advance(45_000)
      const loginAt = t.clock.now()
      const res = await t.client.login({
        phoneNumber: PHONES.alice,
        credential: { $case: 'code', value: t.sms.lastCodeFor(PHONES.alice, 'login') },
      })
      t.clock.advance(90_000)

      const session = await t.client.validateSession({ sessionToken: res.sessionToken })

      expect(session.authenticatedAt).toEqual(new Date(loginAt))
      expect(session.sessionId).toMatch(UUID)
    })
  })

  describe('ListSessions', () => {
    it("when an account has sessions from several addresses, then ListSessions lists exactly them, newest login first, with their times, client addresses and the caller's marked current", async () => {
      const t = await startTestServer()
      await signUpVerified(t, PHONES.alice, PASSWORD)
      await signUpVerified(t, PHONES.bob, PASSWORD)
      const t1 = t.clock.now()
      const oldest = await login(t, '198.51.100.7')
      await login(t, '198.51.100.7', PHONES.bob)
      t.clock.advance(60_000)
      const t2 = t.clock.now()
      // An IPv6 client is keyed (and shown) by its /64.
      const middle = await login(t, '2001:db8:1:2:aaaa:bbbb:cccc:dddd')
      t.clock.advance(60_000)
      const t3 = t.clock.now()
      const newest = await login(t, '203.0.113.9')
      await login(t, '203.0.113.9', PHONES.bob)
      t.clock.advance(1_000)

      const res = await t.client.listSessions({ sessionToken: middle.sessionToken })

      expect(res).toEqual({
        sessions: [
          {
            sessionId: await idOf(t, newest.sessionToken),
            createdAt: new Date(t3),
            expiresAt: new Date(t3 + DAY),
            authenticatedAt: new Date(t3),
            clientAddress: '203.0.113.9',
            current: false,
          },
          {
            sessionId: await idOf(t, middle.sessionToken),
            createdAt: new Date(t2),
            expiresAt: new Date(t2 + DAY),
            authenticatedAt: new Date(t2),
            clientAddress: '2001:db8:1:2::/64',
            current: true,
          },
          {
            sessionId: await idOf(t, oldest.sessionToken),
            createdAt: new Date(t1),
            expiresAt: new Date(t1 + DAY),
            authenticatedAt: new Date(t1),
            clientAddress: '198.51.100.7',
            current: false,
          },
        ],
      })
      // Asked through another session, the same list marks that one current instead.
      const fromOldest = await t.client.listSessions({ sessionToken: oldest.sessionToken })
      expect(fromOldest.sessions.map((s) => s.current)).toEqual([false, false, true])
      expect(fromOldest.sessions.map((s) => s.sessionId)).toEqual(
        res.sessions.map((s) => s.sessionId),
      )
    })

    it("when two accounts have sessions, then each lists only its own and never the other's", async () => {
      const t = await startTestServer()
      await signUpVerified(t, PHONES.alice, PASSWORD)
      await signUpVerified(t, PHONES.bob, PASSWORD)
      const alice1 = await login(t, '198.51.100.1')
      const alice2 = await login(t, '198.51.100.2')
      const bob = await login(t, '198.51.100.1', PHONES.bob)
      const aliceIds = [await idOf(t, alice1.sessionToken), await idOf(t, alice2.sessionToken)]
      const bobId = await idOf(t, bob.sessionToken)

      const forBob = await t.client.listSessions({ sessionToken: bob.sessionToken })
      const forAlice = await t.client.listSessions({ sessionToken: alice1.sessionToken })

      expect(forBob.sessions.map((s) => s.sessionId)).toEqual([bobId])
      expect(forBob.sessions[0]?.current).toBe(true)
      expect(forAlice.sessions.map((s) => s.sessionId).sort()).toEqual([...aliceIds].sort())
      expect(forAlice.sessions.map((s) => s.sessionId)).not.toContain(bobId)
    })

    it('when sessions were logged out, revoked or have expired, then they are not listed', async () => {
      const t = await startTestServer()
      await signUpVerified(t, PHONES.alice, PASSWORD)
      const expiring = await login(t, '198.51.100.1')
      t.clock.advance(DAY / 2)
      const caller = await login(t, '198.51.100.2')
      t.clock.advance(1_000)
      const loggedOut = await login(t, '198.51.100.3')
      t.clock.advance(1_000)
      const revoked = await login(t, '198.51.100.4')
      const expiringId = await idOf(t, expiring.sessionToken)
      const callerId = await idOf(t, caller.sessionToken)

      await t.client.logout({ sessionToken: loggedOut.sessionToken })
      await t.client.revokeSession({
        sessionToken: caller.sessionToken,
        sessionId: await idOf(t, revoked.sessionToken),
      })
      // One ms before its 24 h are up the first session is still listed...
      t.clock.advance(DAY / 2 - 2_000 - 1)
      const before = await t.client.listSessions({ sessionToken: caller.sessionToken })
      expect(before.sessions.map((s) => s.sessionId)).toEqual([callerId, expiringId])
      // ...and at its expiry it is gone.
      t.clock.advance(1)
      const after = await t.client.listSessions({ sessionToken: caller.sessionToken })

      expect(after.sessions.map((s) => s.sessionId)).toEqual([callerId])
    })

    it('when an account has more than 100 live sessions, then the 100 most recently authenticated are listed', async () => {
      const t = await startTestServer()
      await signUpVerified(t, PHONES.alice, PASSWORD)
      const ids: string[] = []
      let last = ''
      for (let i = 0; i < 101; i += 1) {
        const res = await login(t, `198.51.100.${1 + (i % 200)}`)
        ids.push(await idOf(t, res.sessionToken))
        last = res.sessionToken
        t.clock.advance(1_000)
      }

      const res = await t.client.listSessions({ sessionToken: last })

      expect(res.sessions.map((s) => s.sessionId)).toEqual(ids.slice(1).reverse())
      expect(res.sessions[0]?.current).toBe(true)
    })

    it('when the token names no live session, then ListSessions is UNAUTHENTICATED SESSION_INVALID', async () => {
      const t = await startTestServer()
      await signUpVerified(t, PHONES.alice, PASSWORD)
      const ended = await login(t, '198.51.100.1')
      await t.client.logout({ sessionToken: ended.sessionToken })
      const expired = await login(t, '198.51.100.1')
      t.clock.advance(DAY)

      for (const sessionToken of ['A'.repeat(43), ended.sessionToken, expired.sessionToken]) {
        expectSessionInvalid(await failure(t.client.listSessions({ sessionToken })))
      }
    })
  })

  describe('RevokeSession', () => {
    it("when the caller revokes another session of its account, then that session ends and the caller's stays", async () => {
      const t = await startTestServer()
      await signUpVerified(t, PHONES.alice, PASSWORD)
      const caller = await login(t, '198.51.100.1')
      const other = await login(t, '198.51.100.2')
      const kept = await login(t, '198.51.100.3')

      const res = await t.client.revokeSession({
        sessionToken: caller.sessionToken,
        sessionId: await idOf(t, other.sessionToken),
      })

      expect(res).toEqual({})
      await expectEnded(t, other.sessionToken)
      await t.client.validateSession({ sessionToken: caller.sessionToken })
      await t.client.validateSession({ sessionToken: kept.sessionToken })
      const listed = await t.client.listSessions({ sessionToken: caller.sessionToken })
      expect(listed.sessions.map((s) => s.sessionId).sort()).toEqual(
        [await idOf(t, caller.sessionToken), await idOf(t, kept.sessionToken)].sort(),
      )
    })

    it('when the caller revokes its own current session, then that session ends and the others stay', async () => {
      const t = await startTestServer()
      await signUpVerified(t, PHONES.alice, PASSWORD)
      const caller = await login(t, '198.51.100.1')
      const other = await login(t, '198.51.100.2')

      const res = await t.client.revokeSession({
        sessionToken: caller.sessionToken,
        sessionId: await idOf(t, caller.sessionToken),
      })

      expect(res).toEqual({})
      await expectEnded(t, caller.sessionToken)
      expectSessionInvalid(
        await failure(t.client.listSessions({ sessionToken: caller.sessionToken })),
      )
      await t.client.validateSession({ sessionToken: other.sessionToken })
    })

    it("when the id is unknown, already ended or another account's, then NOT_FOUND SESSION_NOT_FOUND with identical answers, and the other account's session stays", async () => {
      const t = await startTestServer()
      await signUpVerified(t, PHONES.alice, PASSWORD)
      await signUpVerified(t, PHONES.bob, PASSWORD)
      const caller = await login(t, '198.51.100.1')
      const ended = await login(t, '198.51.100.2')
      const endedId = await idOf(t, ended.sessionToken)
      await t.client.revokeSession({ sessionToken: caller.sessionToken, sessionId: endedId })
      const loggedOut = await login(t, '198.51.100.2')
      const loggedOutId = await idOf(t, loggedOut.sessionToken)
      await t.client.logout({ sessionToken: loggedOut.sessionToken })
      const bob = await login(t, '198.51.100.3', PHONES.bob)
      const bobId = await idOf(t, bob.sessionToken)

      const answers: OtpAuthError[] = []
      for (const sessionId of [randomUUID(), endedId, loggedOutId, bobId]) {
        answers.push(
          await failure(t.client.revokeSession({ sessionToken: caller.sessionToken, sessionId })),
        )
      }

      for (const err of answers) {
        expect(err.code).toBe(status.NOT_FOUND)
        expect(err.reason).toBe('SESSION_NOT_FOUND')
        expect(err.domain).toBe('otpauth')
        expect(err.violations).toEqual([])
      }
      expect(new Set(answers.map((err) => JSON.stringify(visible(err)))).size).toBe(1)
      const stillBob = await t.client.validateSession({ sessionToken: bob.sessionToken })
      expect(stillBob.sessionId).toBe(bobId)
      await t.client.validateSession({ sessionToken: caller.sessionToken })
    })

    it('when the id is of an expired session of the account, then it is the same NOT_FOUND SESSION_NOT_FOUND as an unknown id', async () => {
      const t = await startTestServer()
      await signUpVerified(t, PHONES.alice, PASSWORD)
      const expired = await login(t, '198.51.100.1')
      const expiredId = await idOf(t, expired.sessionToken)
      t.clock.advance(DAY)
      const caller = await login(t, '198.51.100.1')

      const unknown = await failure(
        t.client.revokeSession({ sessionToken: caller.sessionToken, sessionId: randomUUID() }),
      )
      const err = await failure(
        t.client.revokeSession({ sessionToken: caller.sessionToken, sessionId: expiredId }),
      )

      expect(err.code).toBe(status.NOT_FOUND)
      expect(err.reason).toBe('SESSION_NOT_FOUND')
      expect(visible(err)).toEqual(visible(unknown))
    })

    it('when session_id is not a UUID, then INVALID_ARGUMENT INVALID_SESSION_ID on session_id, checked before the token', async () => {
      const t = await startTestServer()
      await signUpVerified(t, PHONES.alice, PASSWORD)
      const caller = await login(t, '198.51.100.1')
      const id = await idOf(t, caller.sessionToken)
      const notIds = [
        '',
        'not-a-uuid',
        id.replaceAll('-', ''),
        `${id}0`,
        id.slice(0, 35),
        caller.sessionToken,
      ]

      for (const sessionId of notIds) {
        for (const sessionToken of [caller.sessionToken, 'A'.repeat(43), 'short']) {
          const err = await failure(t.client.revokeSession({ sessionToken, sessionId }))
          expect(err.code).toBe(status.INVALID_ARGUMENT)
          expect(err.reason).toBe('INVALID_SESSION_ID')
          expect(err.domain).toBe('otpauth')
          expect(err.violations).toEqual([
            {
              field: 'session_id',
              description: expect.any(String) as string,
              reason: 'INVALID_SESSION_ID',
            },
          ])
        }
      }
      // Nothing was revoked.
      await t.client.validateSession({ sessionToken: caller.sessionToken })
    })

    it('when the token names no live session, then RevokeSession is UNAUTHENTICATED SESSION_INVALID and revokes nothing', async () => {
      const t = await startTestServer()
      await signUpVerified(t, PHONES.alice, PASSWORD)
      const target = await login(t, '198.51.100.1')
      const sessionId = await idOf(t, target.sessionToken)
      const ended = await login(t, '198.51.100.2')
      await t.client.logout({ sessionToken: ended.sessionToken })

      for (const sessionToken of ['A'.repeat(43), ended.sessionToken]) {
        expectSessionInvalid(await failure(t.client.revokeSession({ sessionToken, sessionId })))
      }

      await t.client.validateSession({ sessionToken: target.sessionToken })
    })
  })

  describe('Logout', () => {
    it("when Logout has allSessions, then every session of the account ends, the caller's too, and another account's stay", async () => {
      const t = await startTestServer()
      await signUpVerified(t, PHONES.alice, PASSWORD)
      await signUpVerified(t, PHONES.bob, PASSWORD)
      const caller = await login(t, '198.51.100.2')
      const alice = [await login(t, '198.51.100.1'), caller, await login(t, '2001:db8::1')]
      const bob = await login(t, '198.51.100.1', PHONES.bob)
      const bobId = await idOf(t, bob.sessionToken)

      const res = await t.client.logout({ sessionToken: caller.sessionToken, allSessions: true })

      expect(res).toEqual({})
      for (const session of alice) await expectEnded(t, session.sessionToken)
      const bobs = await t.client.listSessions({ sessionToken: bob.sessionToken })
      expect(bobs.sessions.map((s) => s.sessionId)).toEqual([bobId])
      // The account itself is untouched: it logs in again.
      const again = await login(t, '198.51.100.1')
      const listed = await t.client.listSessions({ sessionToken: again.sessionToken })
      expect(listed.sessions).toHaveLength(1)
    })

    it('when Logout gets a malformed, unknown, ended or expired token, with or without allSessions, then it answers OK and ends nothing', async () => {
      const t = await startTestServer()
      await signUpVerified(t, PHONES.alice, PASSWORD)
      await signUpVerified(t, PHONES.bob, PASSWORD)
      const expired = await login(t, '198.51.100.1')
      t.clock.advance(DAY)
      const live = await login(t, '198.51.100.1')
      const ended = await login(t, '198.51.100.1')
      await t.client.logout({ sessionToken: ended.sessionToken })
      const bob = await login(t, '198.51.100.1', PHONES.bob)
      const tokens = [
        ...malformedTokens(live.sessionToken),
        'A'.repeat(43),
        ended.sessionToken,
        expired.sessionToken,
      ]

      for (const sessionToken of tokens) {
        expect(await t.client.logout({ sessionToken })).toEqual({})
        expect(await t.client.logout({ sessionToken, allSessions: true })).toEqual({})
      }

      await t.client.validateSession({ sessionToken: live.sessionToken })
      await t.client.validateSession({ sessionToken: bob.sessionToken })
    })
  })

  it('when a token is malformed, then every session-taking RPC is UNAUTHENTICATED INVALID_SESSION_TOKEN without a BadRequest, and nothing changes', async () => {
    const t = await startTestServer()
    await signUpVerified(t, PHONES.alice, PASSWORD)
    const ip = '198.51.100.9'
    const live = await login(t, ip)
    const calls: [string, (sessionToken: string) => Promise<unknown>][] = [
      ['ValidateSession', (sessionToken) => t.client.validateSession({ sessionToken }, t.as(ip))],
      ['ListSessions', (sessionToken) => t.client.listSessions({ sessionToken }, t.as(ip))],
      [
        'RevokeSession',
        (sessionToken) =>
          t.client.revokeSession({ sessionToken, sessionId: randomUUID() }, t.as(ip)),
      ],
      [
        'ChangePassword',
        (sessionToken) =>
          t.client.changePassword({ sessionToken, newPassword: 'a new password' }, t.as(ip)),
      ],
      [
        'RequestPhoneChange',
        (sessionToken) =>
          t.client.requestPhoneChange({ sessionToken, newPhoneNumber: PHONES.dave }, t.as(ip)),
      ],
      [
        'ChangePhoneNumber',
        (sessionToken) =>
          t.client.changePhoneNumber(
            { sessionToken, newPhoneNumber: PHONES.dave, code: '123456' },
            t.as(ip),
          ),
      ],
      ['DeleteAccount', (sessionToken) => t.client.deleteAccount({ sessionToken }, t.as(ip))],
    ]

    for (const sessionToken of malformedTokens(live.sessionToken)) {
      for (const [rpc, call] of calls) {
        const err = await failure(call(sessionToken))
        expect({ rpc, code: err.code, reason: err.reason, domain: err.domain }).toEqual({
          rpc,
          code: status.UNAUTHENTICATED,
          reason: 'INVALID_SESSION_TOKEN',
          domain: 'otpauth',
        })
        expect(err.violations).toEqual([])
        expect(err.details?.details.map((d) => d.typeUrl)).toEqual([
          'type.googleapis.com/google.rpc.ErrorInfo',
        ])
      }
    }

    // Nothing happened: the session, the number and the password are as they were, no code was
    // sent, and the ChangePhoneNumber attempts did not count against this client's lockout.
    const session = await t.client.validateSession({ sessionToken: live.sessionToken })
    expect(session.phoneNumber).toBe(PHONES.alice)
    expect(t.sms.sentTo(PHONES.dave)).toEqual([])
    await login(t, ip)
  })
})
