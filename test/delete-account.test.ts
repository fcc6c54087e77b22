import { status } from '@grpc/grpc-js'
import { describe, expect, it } from 'vitest'
import {
  expectInvalidCredentials,
  expectSessionInvalid,
  failure,
  loginWithCode,
  loginWithPassword,
  PHONES,
  queryRow,
  signUpVerified,
  startTestServer,
  STORE,
  visible,
  type TestServer,
} from './harness.js'

const PASSWORD = 'delete me password'
const HOUR = 3_600_000
const DAY = 86_400_000
const WINDOW = 600_000
const COOLDOWN = 30_000
const ME = '198.51.100.30'

async function usersOn(t: TestServer, phone: string): Promise<number> {
  const row = await queryRow(t, `select count(*) as n from users where phone = '${phone}'`)
  return row['n'] as number
}

describe('DeleteAccount', () => {
  it('when an account is deleted, then every session ends and codes asked for before no longer work, and the number signs up again as a new account', async () => {
    const t = await startTestServer()
    await signUpVerified(t, PHONES.alice, PASSWORD, ME)
    const first = await loginWithPassword(t, PHONES.alice, PASSWORD, ME)
    const second = await loginWithPassword(t, PHONES.alice, PASSWORD, '198.51.100.31')
    // A login code and a phone change code, both live when the account goes.
    t.clock.advance(COOLDOWN)
    await t.client.requestLoginCode({ phoneNumber: PHONES.alice }, t.as(ME))
    const loginCode = t.sms.lastCodeFor(PHONES.alice, 'login')
    await t.client.requestPhoneChange(
      { sessionToken: first.sessionToken, newPhoneNumber: PHONES.carol },
      t.as(ME),
    )
    const changeCode = t.sms.lastCodeFor(PHONES.carol, 'phone_change')
    const third = await loginWithCode(t, PHONES.alice, loginCode, ME)
    t.clock.advance(COOLDOWN)
    await t.client.requestLoginCode({ phoneNumber: PHONES.alice }, t.as(ME))
    const pendingLoginCode = t.sms.lastCodeFor(PHONES.alice, 'login')

    const res = await t.client.deleteAccount({ sessionToken: first.sessionToken }, t.as(ME))

    expect(res).toEqual({})
    for (const s of [first, second, third]) {
      expectSessionInvalid(
        await failure(t.client.validateSession({ sessionToken: s.sessionToken })),
      )
    }
    expect(await usersOn(t, PHONES.alice)).toBe(0)
    // (The login code is tried only once the number has an account again: a try now would use it
    // up whatever the deletion did.)
    expectInvalidCredentials(
      await failure(loginWithPassword(t, PHONES.alice, PASSWORD, '198.51.100.32')),
    )
    if (STORE === 'postgres') {
      // The codes of the account are gone from the shared store, not only unusable.
      const codes = await queryRow(
        t,
        `select count(*) as n from codes where not consumed and (phone = '${PHONES.alice}' or phone = '${first.userId}')`,
      )
      expect(codes).toEqual({ n: 0 })
    }

    // Sign-up again: the same number, a new account. (The last send was 30 s ago.)
    t.clock.advance(COOLDOWN)
    await t.client.register({ phoneNumber: PHONES.alice }, t.as('198.51.100.33'))
    await t.client.verifyOtp(
      { phoneNumber: PHONES.alice, code: t.sms.lastCodeFor(PHONES.alice, 'register') },
      t.as('198.51.100.33'),
    )
    t.clock.advance(COOLDOWN)
    // The login code from before the deletion is still within its 5 minutes: it must not log in
    // to the new account.
    expectInvalidCredentials(
      await failure(loginWithCode(t, PHONES.alice, pendingLoginCode, '192.0.2.1')),
    )
    await t.client.requestLoginCode({ phoneNumber: PHONES.alice })
    const again = await loginWithCode(t, PHONES.alice, t.sms.lastCodeFor(PHONES.alice, 'login'), ME)

    expect(again.userId).toMatch(/^[0-9a-f-]{36}$/)
    expect(again.userId).not.toBe(first.userId)
    const info = await t.client.validateSession({ sessionToken: again.sessionToken })
    expect(info).toMatchObject({ userId: again.userId, phoneNumber: PHONES.alice })
    // The old password went with the old account, and so did its phone change code.
    expectInvalidCredentials(
      await failure(loginWithPassword(t, PHONES.alice, PASSWORD, '198.51.100.34')),
    )
    const change = await failure(
      t.client.changePhoneNumber(
        { sessionToken: again.sessionToken, newPhoneNumber: PHONES.carol, code: changeCode },
        t.as('192.0.2.2'),
      ),
    )
    expectInvalidCredentials(change)
    expect(await usersOn(t, PHONES.alice)).toBe(1)
    // The old sessions stay ended: they do not come back as the new account's.
    expectSessionInvalid(
      await failure(t.client.validateSession({ sessionToken: second.sessionToken })),
    )
  })

  it('when two accounts exist, then deleting one leaves the other and its sessions alone', async () => {
    const t = await startTestServer()
    await signUpVerified(t, PHONES.alice, PASSWORD, ME)
    await signUpVerified(t, PHONES.bob, 'bob password', ME)
    const alice = await loginWithPassword(t, PHONES.alice, PASSWORD, ME)
    const bob = await loginWithPassword(t, PHONES.bob, 'bob password', ME)

    await t.client.deleteAccount({ sessionToken: alice.sessionToken })

    const info = await t.client.validateSession({ sessionToken: bob.sessionToken })
    expect(info).toMatchObject({ userId: bob.userId, phoneNumber: PHONES.bob })
    await loginWithPassword(t, PHONES.bob, 'bob password', ME)
    expect(await usersOn(t, PHONES.bob)).toBe(1)
  })

  it('when the login is older than the privileged window, then DeleteAccount is FAILED_PRECONDITION REAUTHENTICATION_REQUIRED and nothing is deleted; at window - 1 ms it deletes', async () => {
    const t = await startTestServer()
    await signUpVerified(t, PHONES.alice, PASSWORD, ME)
    const old = await loginWithPassword(t, PHONES.alice, PASSWORD, ME)

    t.clock.advance(WINDOW)
    const err = await failure(t.client.deleteAccount({ sessionToken: old.sessionToken }))

    expect(err.code).toBe(status.FAILED_PRECONDITION)
    expect(err.reason).toBe('REAUTHENTICATION_REQUIRED')
    expect(err.domain).toBe('otpauth')
    expect(err.message).toBe(
      'this change needs a recent login; log in again and retry with the new session',
    )
    const still = await t.client.validateSession({ sessionToken: old.sessionToken })
    expect(still.userId).toBe(old.userId)
    expect(await usersOn(t, PHONES.alice)).toBe(1)

    const fresh = await loginWithPassword(t, PHONES.alice, PASSWORD, ME)
    t.clock.advance(WINDOW - 1)
    await t.client.deleteAccount({ sessionToken: fresh.sessionToken })

    expect(await usersOn(t, PHONES.alice)).toBe(0)
    expectSessionInvalid(
      await failure(t.client.validateSession({ sessionToken: old.sessionToken })),
    )
  })

  it('when the token is unknown, ended, expired or malformed, then DeleteAccount is UNAUTHENTICATED and the account stays', async () => {
    const t = await startTestServer()
    await signUpVerified(t, PHONES.alice, PASSWORD, ME)
    const ended = await loginWithPassword(t, PHONES.alice, PASSWORD, ME)
    await t.client.logout({ sessionToken: ended.sessionToken, allSessions: false })
    const expiring = await loginWithPassword(t, PHONES.alice, PASSWORD, ME)
    t.clock.advance(DAY)
    const live = await loginWithPassword(t, PHONES.alice, PASSWORD, ME)

    const unknown = await failure(t.client.deleteAccount({ sessionToken: 'A'.repeat(43) }))
    const afterLogout = await failure(t.client.deleteAccount({ sessionToken: ended.sessionToken }))
    const expired = await failure(t.client.deleteAccount({ sessionToken: expiring.sessionToken }))
    const malformed = await failure(t.client.deleteAccount({ sessionToken: 'not a token' }))
    const empty = await failure(t.client.deleteAccount({ sessionToken: '' }))

    expectSessionInvalid(unknown)
    expect(visible(afterLogout)).toEqual(visible(unknown))
    expect(visible(expired)).toEqual(visible(unknown))
    for (const err of [malformed, empty]) {
      expect(err.code).toBe(status.UNAUTHENTICATED)
      expect(err.reason).toBe('INVALID_SESSION_TOKEN')
      expect(err.violations).toEqual([])
    }
    expect(await usersOn(t, PHONES.alice)).toBe(1)
    await t.client.validateSession({ sessionToken: live.sessionToken })
  })

  it('when an account is deleted, then the sends already counted against its number stay: the hourly cap is still full', async () => {
    const t = await startTestServer()
    await signUpVerified(t, PHONES.alice, PASSWORD, ME)
    const start = t.clock.now()
    // 4 more sends: 5 in the hour with the sign-up code.
    for (let i = 0; i < 4; i += 1) {
      t.clock.advance(COOLDOWN)
      await t.client.requestLoginCode({ phoneNumber: PHONES.alice }, t.as(ME))
    }
    t.clock.advance(10_000)
    const session = await loginWithPassword(t, PHONES.alice, PASSWORD, ME)

    await t.client.deleteAccount({ sessionToken: session.sessionToken })

    // The last send was 10 s ago. The contract allows its cooldown to hold or not; the hourly
    // cap must hold either way.
    const atOnce = await failure(t.client.register({ phoneNumber: PHONES.alice }, t.as(ME)))
    console.log(
      `Register right after DeleteAccount (last send 10 s before): ${String(atOnce.reason)}, ` +
        `retry ${String(atOnce.retryDelayMs)} ms`,
    )
    expect(['RESEND_TOO_SOON', 'NUMBER_SEND_LIMIT']).toContain(atOnce.reason)
    if (atOnce.reason === 'RESEND_TOO_SOON') expect(atOnce.retryDelayMs).toBe(COOLDOWN - 10_000)
    t.clock.advance(COOLDOWN - 10_000)
    const capped = await failure(t.client.register({ phoneNumber: PHONES.alice }, t.as(ME)))
    expect(capped.reason).toBe('NUMBER_SEND_LIMIT')
    expect(capped.retryDelayMs).toBe(start + HOUR - t.clock.now())
    expect(t.sms.sentTo(PHONES.alice)).toHaveLength(5)

    t.clock.advance(start + HOUR - t.clock.now())
    await signUpVerified(t, PHONES.alice, undefined, ME)
    expect(await usersOn(t, PHONES.alice)).toBe(1)
  })
})
