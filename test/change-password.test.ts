import { status } from '@grpc/grpc-js'
import { describe, expect, it } from 'vitest'
import type { OtpAuthError } from '../src/client/otpauth-client.js'
import {
  expectFailure,
  expectInvalidCredentials,
  expectSessionInvalid,
  failure,
  loginWithCode,
  loginWithPassword,
  PHONES,
  signUpVerified,
  startTestServer,
  type TestServer,
} from './harness.js'

const DAY = 86_400_000
const WINDOW = 600_000
const COOLDOWN = 30_000
const IP = '198.51.100.1'

function expectInvalidPassword(err: OtpAuthError): void {
  expectFailure(err, status.INVALID_ARGUMENT, 'INVALID_PASSWORD')
  expect(err.violations).toEqual([
    {
      // The contract does not name the field; the service reuses Register's 'password'.
      field: expect.stringMatching(/password$/) as string,
      description: expect.any(String) as string,
      reason: 'INVALID_PASSWORD',
    },
  ])
}

/** loginWithNewCode asks for a login code (after the resend cooldown) and logs in with it. */
async function loginWithNewCode(t: TestServer, phone: string, ip = IP) {
  t.clock.advance(COOLDOWN)
  await t.client.requestLoginCode({ phoneNumber: phone }, t.as(ip))
  return loginWithCode(t, phone, t.sms.lastCodeFor(phone, 'login'), ip)
}

let failuresSent = 0

/** fails `count` password logins for the number, at most 2 per address (below the lockout). */
async function failFromManyAddresses(t: TestServer, phone: string, count: number): Promise<void> {
  for (let i = 0; i < count; i += 1) {
    const n = Math.floor(failuresSent++ / 2)
    const ip = `10.${Math.floor(n / 250)}.${n % 250}.1`
    expectInvalidCredentials(await failure(loginWithPassword(t, phone, `wrong password ${i}`, ip)))
  }
}

describe('ChangePassword', () => {
  it('when the login is one ms short of the privileged window, then ChangePassword works; at exactly the window, FAILED_PRECONDITION REAUTHENTICATION_REQUIRED and nothing changes', async () => {
    const t = await startTestServer()
    await signUpVerified(t, PHONES.alice, 'first password')
    const fresh = await loginWithPassword(t, PHONES.alice, 'first password', IP)
    t.clock.advance(WINDOW - 1)

    expect(
      await t.client.changePassword({
        sessionToken: fresh.sessionToken,
        newPassword: 'second password',
      }),
    ).toEqual({})

    const aging = await loginWithPassword(t, PHONES.alice, 'second password', IP)
    t.clock.advance(WINDOW)
    const err = await failure(
      t.client.changePassword({ sessionToken: aging.sessionToken, newPassword: 'third password' }),
    )

    expectFailure(err, status.FAILED_PRECONDITION, 'REAUTHENTICATION_REQUIRED')
    // The refused change did nothing; the old session is still a live session, just not a
    // privileged one; a new login is privileged again.
    await t.client.validateSession({ sessionToken: aging.sessionToken })
    expectInvalidCredentials(
      await failure(loginWithPassword(t, PHONES.alice, 'third password', IP)),
    )
    const again = await loginWithPassword(t, PHONES.alice, 'second password', IP)
    await t.client.changePassword({
      sessionToken: again.sessionToken,
      newPassword: 'third password',
    })
    await loginWithPassword(t, PHONES.alice, 'third password', IP)
  })

  it('when privilegedSessionSeconds is 120, then the window is 120 s', async () => {
    const t = await startTestServer({ config: { privilegedSessionSeconds: 120 } })
    await signUpVerified(t, PHONES.alice, 'first password')
    const fresh = await loginWithPassword(t, PHONES.alice, 'first password', IP)
    t.clock.advance(120_000 - 1)

    await t.client.changePassword({
      sessionToken: fresh.sessionToken,
      newPassword: 'second password',
    })

    const aging = await loginWithPassword(t, PHONES.alice, 'second password', IP)
    t.clock.advance(120_000)
    expectFailure(
      await failure(
        t.client.changePassword({
          sessionToken: aging.sessionToken,
          newPassword: 'third password',
        }),
      ),
      status.FAILED_PRECONDITION,
      'REAUTHENTICATION_REQUIRED',
    )
  })

  it('when a code-only account sets a password, then it logs in with that password', async () => {
    const t = await startTestServer()
    await signUpVerified(t, PHONES.alice)
    expectInvalidCredentials(
      await failure(loginWithPassword(t, PHONES.alice, 'chosen password', '198.51.100.2')),
    )
    const session = await loginWithNewCode(t, PHONES.alice)

    expect(
      await t.client.changePassword({
        sessionToken: session.sessionToken,
        newPassword: 'chosen password',
      }),
    ).toEqual({})

    const res = await loginWithPassword(t, PHONES.alice, 'chosen password', IP)
    expect(res.message).toBe('Login successful')
    expect(res.userId).toBe(session.userId)
  })

  it('when a password is replaced, then the old one fails and the new one works, under NFKC like Register', async () => {
    const t = await startTestServer()
    await signUpVerified(t, PHONES.alice, 'old password')
    const session = await loginWithPassword(t, PHONES.alice, 'old password', IP)

    // Precomposed "é" set here, decomposed (e + combining acute) at login.
    await t.client.changePassword({
      sessionToken: session.sessionToken,
      newPassword: 'caf\u00e9 au lait',
    })

    expectInvalidCredentials(
      await failure(loginWithPassword(t, PHONES.alice, 'old password', '198.51.100.2')),
    )
    const res = await loginWithPassword(t, PHONES.alice, 'cafe\u0301 au lait', IP)
    expect(res.userId).toBe(session.userId)
  })

  it("when the password changes, then every other session of the account ends, the caller's stays, and other accounts' stay", async () => {
    const t = await startTestServer()
    await signUpVerified(t, PHONES.alice, 'old password')
    await signUpVerified(t, PHONES.bob, 'bob password')
    const before = await loginWithPassword(t, PHONES.alice, 'old password', '198.51.100.2')
    const caller = await loginWithPassword(t, PHONES.alice, 'old password', IP)
    const after = await loginWithPassword(t, PHONES.alice, 'old password', '2001:db8::1')
    const bob = await loginWithPassword(t, PHONES.bob, 'bob password', IP)

    await t.client.changePassword({
      sessionToken: caller.sessionToken,
      newPassword: 'new password',
    })

    for (const ended of [before, after]) {
      expectSessionInvalid(
        await failure(t.client.validateSession({ sessionToken: ended.sessionToken })),
      )
    }
    const kept = await t.client.validateSession({ sessionToken: caller.sessionToken })
    const listed = await t.client.listSessions({ sessionToken: caller.sessionToken })
    expect(listed.sessions.map((s) => s.sessionId)).toEqual([kept.sessionId])
    await t.client.validateSession({ sessionToken: bob.sessionToken })
    await loginWithPassword(t, PHONES.bob, 'bob password', IP)
  })

  it('when the new password breaks the rules, then INVALID_ARGUMENT INVALID_PASSWORD, checked before the session, and nothing changes', async () => {
    const t = await startTestServer()
    await signUpVerified(t, PHONES.alice, 'old password')
    const stale = await loginWithPassword(t, PHONES.alice, 'old password', IP)
    t.clock.advance(WINDOW)
    const ended = await loginWithPassword(t, PHONES.alice, 'old password', IP)
    await t.client.logout({ sessionToken: ended.sessionToken })
    const live = await loginWithPassword(t, PHONES.alice, 'old password', IP)
    const tooLong = [
      'x'.repeat(129),
      // 43 ligatures are 129 characters after NFKC.
      '\ufb03'.repeat(43),
    ]

    for (const newPassword of ['', 'x'.repeat(7), ...tooLong]) {
      for (const sessionToken of [
        live.sessionToken,
        stale.sessionToken,
        ended.sessionToken,
        'A'.repeat(43),
        'short',
      ]) {
        expectInvalidPassword(await failure(t.client.changePassword({ sessionToken, newPassword })))
      }
    }

    await t.client.validateSession({ sessionToken: stale.sessionToken })
    await loginWithPassword(t, PHONES.alice, 'old password', IP)
  })

  it('when the new password is 8 or 128 characters after NFKC, then it is accepted', async () => {
    const t = await startTestServer()
    await signUpVerified(t, PHONES.alice, 'old password')
    const session = await loginWithPassword(t, PHONES.alice, 'old password', IP)

    for (const newPassword of [
      'x'.repeat(8),
      'y'.repeat(128),
      // 3 ligatures, 9 characters after NFKC.
      '\ufb03'.repeat(3),
    ]) {
      await t.client.changePassword({ sessionToken: session.sessionToken, newPassword })
      await loginWithPassword(t, PHONES.alice, newPassword, IP)
    }
    await loginWithPassword(t, PHONES.alice, 'ffiffiffi', IP)
  })

  it('when password login was disabled by the per-number failure cap, then ChangePassword clears it and the new password logs in', async () => {
    const t = await startTestServer({ config: { numberFailureLimit: 5 } })
    await signUpVerified(t, PHONES.alice, 'alice password')
    // A session from before the attack, still privileged.
    const session = await loginWithPassword(t, PHONES.alice, 'alice password', IP)
    await failFromManyAddresses(t, PHONES.alice, 5)
    const disabled = await failure(loginWithPassword(t, PHONES.alice, 'alice password', IP))
    expect(disabled.code).toBe(status.FAILED_PRECONDITION)
    expect(disabled.reason).toBe('PASSWORD_LOGIN_DISABLED')

    await t.client.changePassword({
      sessionToken: session.sessionToken,
      newPassword: 'fresh password',
    })

    // The count starts from zero: 4 more failures stay below the cap of 5.
    await failFromManyAddresses(t, PHONES.alice, 4)
    const res = await loginWithPassword(t, PHONES.alice, 'fresh password', IP)
    expect(res.userId).toBe(session.userId)
  })

  it('when the password is forgotten, then RequestLoginCode, Login with the code and ChangePassword reset it, and the sessions of the old password end', async () => {
    const t = await startTestServer()
    await signUpVerified(t, PHONES.alice, 'forgotten password')
    // Someone who knew the old password is logged in elsewhere.
    const intruder = await loginWithPassword(t, PHONES.alice, 'forgotten password', '203.0.113.66')

    const reset = await loginWithNewCode(t, PHONES.alice)
    await t.client.changePassword({
      sessionToken: reset.sessionToken,
      newPassword: 'remembered password',
    })
    const res = await loginWithPassword(t, PHONES.alice, 'remembered password', IP)

    expect(res.message).toBe('Login successful')
    expect(res.userId).toBe(reset.userId)
    expectInvalidCredentials(
      await failure(loginWithPassword(t, PHONES.alice, 'forgotten password', '203.0.113.66')),
    )
    expectSessionInvalid(
      await failure(t.client.validateSession({ sessionToken: intruder.sessionToken })),
    )
  })

  it('when the token is unknown, ended, expired or malformed, then UNAUTHENTICATED before any privilege check, and the password is unchanged', async () => {
    const t = await startTestServer()
    await signUpVerified(t, PHONES.alice, 'old password')
    const expired = await loginWithPassword(t, PHONES.alice, 'old password', IP)
    t.clock.advance(DAY)
    const loggedOut = await loginWithPassword(t, PHONES.alice, 'old password', IP)
    await t.client.logout({ sessionToken: loggedOut.sessionToken })
    const replaced = await loginWithPassword(t, PHONES.alice, 'old password', IP)
    const other = await loginWithPassword(t, PHONES.alice, 'old password', IP)
    // This change ends `replaced`.
    await t.client.changePassword({ sessionToken: other.sessionToken, newPassword: 'new password' })

    for (const sessionToken of [
      'A'.repeat(43),
      loggedOut.sessionToken,
      replaced.sessionToken,
      expired.sessionToken,
    ]) {
      expectSessionInvalid(
        await failure(t.client.changePassword({ sessionToken, newPassword: 'attacker password' })),
      )
    }
    const malformed = await failure(
      t.client.changePassword({ sessionToken: 'short', newPassword: 'attacker password' }),
    )
    expect(malformed.code).toBe(status.UNAUTHENTICATED)
    expect(malformed.reason).toBe('INVALID_SESSION_TOKEN')

    expectInvalidCredentials(
      await failure(loginWithPassword(t, PHONES.alice, 'attacker password', '198.51.100.2')),
    )
    await loginWithPassword(t, PHONES.alice, 'new password', IP)
  })
})
