import { status } from '@grpc/grpc-js'
import { describe, expect, it } from 'vitest'
import type { OtpAuthError } from '../src/client/otpauth-client.js'
import {
  expectInvalidCredentials,
  failure,
  ksDistance,
  loginWithPassword,
  median,
  PHONES,
  providerLatency,
  quantiles,
  queryRow,
  seeded,
  signUpVerified,
  startTestServer,
  visible,
  wrong,
  type TestServer,
  timePairs,
} from './harness.js'

const PASSWORD = 'phone change password'
const HOUR = 3_600_000
const WINDOW = 600_000
const COOLDOWN = 30_000
/** Valid UK mobiles nobody in a test has signed up with unless it says so. */
const FREE = ['+447911123457', '+447911123458', '+447911123459'] as const
const ME = '198.51.100.10'

/** account signs a number up with a password and logs in from `ip`: a fresh, privileged session. */
async function account(t: TestServer, phone: string, ip = ME): Promise<string> {
  await signUpVerified(t, phone, PASSWORD)
  return (await loginWithPassword(t, phone, PASSWORD, ip)).sessionToken
}

function requestChange(t: TestServer, token: string, phone: string, ip = ME) {
  return t.client.requestPhoneChange({ sessionToken: token, newPhoneNumber: phone }, t.as(ip))
}

function change(t: TestServer, token: string, phone: string, code: string, ip = ME) {
  return t.client.changePhoneNumber({ sessionToken: token, newPhoneNumber: phone, code }, t.as(ip))
}

function notices(t: TestServer, phone: string) {
  return t.sms.sentTo(phone).filter((m) => m.purpose === 'phone_change_notice')
}

describe('Phone number change', () => {
  it('when the code from RequestPhoneChange is given, then the account moves: E.164 answer, new number in ValidateSession, logins on the new number only, other sessions ended, one notice to the old number', async () => {
    const t = await startTestServer()
    const token = await account(t, PHONES.alice)
    const other = await loginWithPassword(t, PHONES.alice, PASSWORD, '198.51.100.11')
    const before = await t.client.validateSession({ sessionToken: token })

    const sent = await requestChange(t, token, '+44 7911 123456')

    expect(sent).toEqual({
      message: 'OTP sent to phone number',
      codeExpiresAt: new Date(t.clock.now() + 5 * 60_000),
      resendAvailableAt: new Date(t.clock.now() + COOLDOWN),
    })
    const toNew = t.sms.sentTo(PHONES.carol)
    expect(toNew).toHaveLength(1)
    expect(toNew[0]?.purpose).toBe('phone_change')
    const code = t.sms.lastCodeFor(PHONES.carol, 'phone_change')
    expect(code).toMatch(/^\d{6}$/)
    expect(notices(t, PHONES.alice)).toEqual([])

    const changed = await change(t, token, '+44 7911 123456', code)

    expect(changed).toEqual({ phoneNumber: PHONES.carol })
    const after = await t.client.validateSession({ sessionToken: token })
    expect(after).toEqual({ ...before, phoneNumber: PHONES.carol })
    const ended = await failure(t.client.validateSession({ sessionToken: other.sessionToken }))
    expect([ended.code, ended.reason]).toEqual([status.UNAUTHENTICATED, 'SESSION_INVALID'])

    const onNew = await loginWithPassword(t, PHONES.carol, PASSWORD, '198.51.100.12')
    expect(onNew.userId).toBe(before.userId)
    expectInvalidCredentials(
      await failure(loginWithPassword(t, PHONES.alice, PASSWORD, '198.51.100.13')),
    )
    // Code logins follow the number too: the old number gets no login code any more.
    t.clock.advance(COOLDOWN)
    await t.client.requestLoginCode({ phoneNumber: PHONES.alice })
    await t.client.requestLoginCode({ phoneNumber: PHONES.carol })
    expect(t.sms.sentTo(PHONES.alice).filter((m) => m.purpose === 'login')).toEqual([])
    const byCode = await t.client.login({
      phoneNumber: PHONES.carol,
      credential: { $case: 'code', value: t.sms.lastCodeFor(PHONES.carol, 'login') },
    })
    expect(byCode.userId).toBe(before.userId)

    // Exactly one notice, to the old number, with no code in it.
    const [notice, ...more] = notices(t, PHONES.alice)
    expect(more).toEqual([])
    expect(notice?.code).toBe('')
    expect(notice?.text).not.toMatch(/\d{6}/)
    expect(notice?.text).not.toContain(code)
    expect(notices(t, PHONES.carol)).toEqual([])
    // The code is used up (and the number is the account's own now).
    expectInvalidCredentials(await failure(change(t, token, PHONES.carol, code)))
  })

  it('when wrong codes are given, then each is INVALID_CREDENTIALS and the third locks the client out of ChangePhoneNumber and Login, the right code included', async () => {
    const t = await startTestServer()
    const token = await account(t, PHONES.alice)
    await requestChange(t, token, PHONES.carol)
    const code = t.sms.lastCodeFor(PHONES.carol, 'phone_change')
    const attacker = '203.0.113.66'

    for (let i = 1; i <= 3; i += 1) {
      const err = await failure(change(t, token, PHONES.carol, wrong(code), attacker))
      expectInvalidCredentials(err)
      expect(err.message).toBe('invalid phone number or credentials')
    }

    const locked = await failure(change(t, token, PHONES.carol, code, attacker))
    expect(locked.code).toBe(status.RESOURCE_EXHAUSTED)
    expect(locked.reason).toBe('CLIENT_LOCKED_OUT')
    expect(locked.retryDelayMs).toBeGreaterThan(HOUR - 2_000)
    const login = await failure(loginWithPassword(t, PHONES.alice, PASSWORD, attacker))
    expect(login.reason).toBe('CLIENT_LOCKED_OUT')
    // The locked tries left the code alone (3 wrong tries are fewer than it allows).
    expect(await change(t, token, PHONES.carol, code, '198.51.100.14')).toEqual({
      phoneNumber: PHONES.carol,
    })
  })

  it('when VerifyOtp and Login failures come first, then ChangePhoneNumber failures add to the same lockout count', async () => {
    const t = await startTestServer()
    const token = await account(t, PHONES.alice)
    await requestChange(t, token, PHONES.carol)
    const code = t.sms.lastCodeFor(PHONES.carol, 'phone_change')
    const attacker = '203.0.113.67'

    await failure(t.client.verifyOtp({ phoneNumber: PHONES.dave, code: '000000' }, t.as(attacker)))
    await failure(loginWithPassword(t, PHONES.bob, 'not the password', attacker))
    expectInvalidCredentials(await failure(change(t, token, PHONES.carol, wrong(code), attacker)))

    const locked = await failure(change(t, token, PHONES.carol, code, attacker))
    expect(locked.reason).toBe('CLIENT_LOCKED_OUT')
  })

  it("when a code is used by another account or for another number, then it fails like a wrong code and the owner's code still works", async () => {
    const t = await startTestServer()
    const alice = await account(t, PHONES.alice)
    const bob = await account(t, PHONES.bob)
    await requestChange(t, alice, PHONES.carol)
    const aliceCode = t.sms.lastCodeFor(PHONES.carol, 'phone_change')
    const plainWrong = await failure(change(t, alice, PHONES.carol, wrong(aliceCode), '192.0.2.1'))

    // Bob asks for the same number, then tries Alice's code for it.
    t.clock.advance(COOLDOWN)
    await requestChange(t, bob, PHONES.carol)
    const bobCode = t.sms.lastCodeFor(PHONES.carol, 'phone_change')
    const bobWithAlices = await failure(change(t, bob, PHONES.carol, aliceCode, '192.0.2.2'))
    // Alice's code for carol, given for another (free) number.
    const wrongNumber = await failure(change(t, alice, PHONES.dave, aliceCode, '192.0.2.3'))

    for (const err of [plainWrong, bobWithAlices, wrongNumber]) {
      expectInvalidCredentials(err)
      expect(visible(err)).toEqual(visible(plainWrong))
    }
    expect(bobCode).not.toBe(aliceCode)
    expect(await change(t, alice, PHONES.carol, aliceCode)).toEqual({ phoneNumber: PHONES.carol })
    // Carol is Alice's now: Bob's own, right code for it fails like a wrong one.
    const taken = await failure(change(t, bob, PHONES.carol, bobCode, '192.0.2.5'))
    expect(visible(taken)).toEqual(visible(plainWrong))
    expect((await t.client.validateSession({ sessionToken: bob })).phoneNumber).toBe(PHONES.bob)
    expect((await t.client.validateSession({ sessionToken: alice })).phoneNumber).toBe(PHONES.carol)
  })

  it('when two accounts race to move to the same free number with their own right codes, then exactly one wins and the other fails like a wrong code', async () => {
    const t = await startTestServer()
    const alice = await account(t, PHONES.alice)
    const bob = await account(t, PHONES.bob)
    await requestChange(t, alice, PHONES.carol)
    const aliceCode = t.sms.lastCodeFor(PHONES.carol, 'phone_change')
    t.clock.advance(COOLDOWN)
    await requestChange(t, bob, PHONES.carol)
    const bobCode = t.sms.lastCodeFor(PHONES.carol, 'phone_change')

    const [aliceResult, bobResult] = await Promise.allSettled([
      change(t, alice, PHONES.carol, aliceCode, '192.0.2.61'),
      change(t, bob, PHONES.carol, bobCode, '192.0.2.62'),
    ])
    const results = [aliceResult, bobResult]

    const won = results.filter((r) => r.status === 'fulfilled')
    const lost = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as OtpAuthError] : []))
    expect(won).toHaveLength(1)
    expect(lost).toHaveLength(1)
    expectInvalidCredentials(lost[0] as OtpAuthError)
    const winner = aliceResult.status === 'fulfilled' ? alice : bob
    const loser = winner === alice ? bob : alice
    expect((await t.client.validateSession({ sessionToken: winner })).phoneNumber).toBe(
      PHONES.carol,
    )
    const stayed = (await t.client.validateSession({ sessionToken: loser })).phoneNumber
    expect([PHONES.alice, PHONES.bob]).toContain(stayed)
    expect(
      await queryRow(t, `select count(*) as n from users where phone = '${PHONES.carol}'`),
    ).toEqual({ n: 1 })
    const noticed = [PHONES.alice, PHONES.bob].filter((p) => notices(t, p).length > 0)
    expect(noticed).toEqual([winner === alice ? PHONES.alice : PHONES.bob])
  })

  it("when the new number belongs to a verified account (another's or the caller's own), then RequestPhoneChange answers exactly as for a free number and sends nothing, and ChangePhoneNumber fails like a wrong code", async () => {
    const t = await startTestServer()
    const token = await account(t, PHONES.alice)
    await signUpVerified(t, PHONES.bob, 'bob password')
    // Past the sign-up cooldowns, so all three numbers start alike.
    t.clock.advance(COOLDOWN)
    const fresh = await loginWithPassword(t, PHONES.alice, PASSWORD, ME)
    const smsBefore = t.sms.messages.length

    const free = await requestChange(t, fresh.sessionToken, PHONES.carol, '192.0.2.10')
    const anothers = await requestChange(t, fresh.sessionToken, PHONES.bob, '192.0.2.11')
    const own = await requestChange(t, fresh.sessionToken, PHONES.alice, '192.0.2.12')

    expect(anothers).toEqual(free)
    expect(own).toEqual(free)
    expect(t.sms.messages.slice(smsBefore).map((m) => [m.phone, m.purpose])).toEqual([
      [PHONES.carol, 'phone_change'],
    ])

    // Failures alike: the resend cooldown on each number.
    const tooSoon = await Promise.all(
      [PHONES.carol, PHONES.bob, PHONES.alice].map((p) =>
        failure(requestChange(t, fresh.sessionToken, p, '192.0.2.13')),
      ),
    )
    for (const err of tooSoon) {
      expect(err.reason).toBe('RESEND_TOO_SOON')
      expect(visible(err)).toEqual(visible(tooSoon[0] as OtpAuthError))
    }

    // ChangePhoneNumber to a taken number: any code fails as a wrong code for a free number does.
    const code = t.sms.lastCodeFor(PHONES.carol, 'phone_change')
    const wrongFree = await failure(
      change(t, fresh.sessionToken, PHONES.carol, wrong(code), '192.0.2.20'),
    )
    const toAnothers = await failure(change(t, fresh.sessionToken, PHONES.bob, code, '192.0.2.21'))
    const toOwn = await failure(change(t, fresh.sessionToken, PHONES.alice, code, '192.0.2.22'))
    expectInvalidCredentials(wrongFree)
    expect(visible(toAnothers)).toEqual(visible(wrongFree))
    expect(visible(toOwn)).toEqual(visible(wrongFree))
    // Nothing moved, and the sessions stayed.
    expect((await t.client.validateSession({ sessionToken: token })).phoneNumber).toBe(PHONES.alice)
    await loginWithPassword(t, PHONES.bob, 'bob password', '192.0.2.23')
    expect(t.sms.messages.slice(smsBefore).map((m) => [m.phone, m.purpose])).toEqual([
      [PHONES.carol, 'phone_change'],
    ])
  })

  it('when SMS sends take a realistic time, then RequestPhoneChange to a taken number takes as long as to a free one (medians and KS distance over alternating pairs)', async () => {
    // A provider whose API answers in ~60 ms with a log-normal spread (HTTP API latencies are
    // right-skewed), drawn from a fixed seed. 120 pairs: enough for the KS test to see a pacer
    // that waits a typical time instead of a time drawn like a real send's.
    const pairs = 120
    const warmUp = 20
    const medianToleranceMs = 15
    // Two-sample KS critical value at alpha = 0.001 for n = m = pairs: 1.95 * sqrt(2 / n).
    const ksBound = 1.95 * Math.sqrt(2 / pairs)
    const t = await startTestServer({
      config: { resendCooldownSeconds: 0, sendsPerNumberPerHour: 100 },
    })
    const random = seeded(20_260_101)
    t.sms.delayMs = providerLatency(random, 60, 0.4)
    const token = await account(t, PHONES.alice)
    // Two numbers of each kind, taken turns: each stays under the hourly cap of 100 sends.
    const takenNumbers = [PHONES.bob, FREE[0]]
    const freeNumbers = [PHONES.carol, PHONES.dave]
    for (const phone of takenNumbers) await signUpVerified(t, phone, 'other password')

    const [taken, free] = await timePairs(
      [takenNumbers, freeNumbers],
      (phone) => requestChange(t, token, phone),
      { pairs, warmUp },
    )

    for (const phone of takenNumbers) {
      expect(t.sms.sentTo(phone).filter((m) => m.purpose === 'phone_change')).toEqual([])
    }
    expect(freeNumbers.flatMap((p) => t.sms.sentTo(p))).toHaveLength(warmUp + pairs)
    const d = ksDistance(taken, free)
    const medianGap = Math.abs(median(taken) - median(free))
    console.log(
      `phone change timing (${pairs} pairs, SMS ~60 ms log-normal sigma 0.4): taken ` +
        `${quantiles(taken)}; free ${quantiles(free)}; median gap ${medianGap.toFixed(1)} ms ` +
        `(tolerance ${medianToleranceMs}); KS D ${d.toFixed(3)} (bound ${ksBound.toFixed(3)})`,
    )
    expect(medianGap).toBeLessThanOrEqual(medianToleranceMs)
    expect(d).toBeLessThan(ksBound)
  }, 120_000)

  it('when the new number is only pending (registered, never verified), then it counts as free and the change removes the pending account', async () => {
    const t = await startTestServer()
    const token = await account(t, PHONES.alice)
    const stranger = '203.0.113.90'
    await t.client.register(
      { phoneNumber: PHONES.dave, password: 'stranger password' },
      t.as(stranger),
    )
    const pendingCode = t.sms.lastCodeFor(PHONES.dave, 'register')
    const userId = (await t.client.validateSession({ sessionToken: token })).userId
    t.clock.advance(COOLDOWN)
    const fresh = (await loginWithPassword(t, PHONES.alice, PASSWORD, ME)).sessionToken

    const sent = await requestChange(t, fresh, PHONES.dave)

    expect(sent.message).toBe('OTP sent to phone number')
    const code = t.sms.lastCodeFor(PHONES.dave, 'phone_change')
    expect(await change(t, fresh, PHONES.dave, code)).toEqual({ phoneNumber: PHONES.dave })
    const rows = await queryRow(
      t,
      `select count(*) as n, min(id) as id from users where phone = '${PHONES.dave}'`,
    )
    expect(rows).toEqual({ n: 1, id: userId })
    // The stranger's sign-up is gone: its code and password do nothing to Alice's account.
    await Promise.allSettled([
      t.client.verifyOtp({ phoneNumber: PHONES.dave, code: pendingCode }, t.as(stranger)),
    ])
    expectInvalidCredentials(
      await failure(loginWithPassword(t, PHONES.dave, 'stranger password', '203.0.113.91')),
    )
    expect((await loginWithPassword(t, PHONES.dave, PASSWORD, '198.51.100.15')).userId).toBe(userId)
  })

  it('when codes for the new number are asked too often, then the send limits refuse them, for taken and free numbers alike', async () => {
    const t = await startTestServer()
    await signUpVerified(t, PHONES.bob, 'bob password')
    await signUpVerified(t, PHONES.alice, PASSWORD)
    // An hour on, the sign-up sends no longer count: every number starts from nothing.
    t.clock.advance(HOUR)
    const token = (await loginWithPassword(t, PHONES.alice, PASSWORD, ME)).sessionToken
    const start = t.clock.now()

    for (let i = 0; i < 5; i += 1) {
      await requestChange(t, token, PHONES.carol, `192.0.2.${30 + i}`)
      await requestChange(t, token, PHONES.bob, `192.0.2.${40 + i}`)
      const free = await failure(requestChange(t, token, PHONES.carol, '192.0.2.50'))
      const taken = await failure(requestChange(t, token, PHONES.bob, '192.0.2.51'))
      expect(free.reason).toBe('RESEND_TOO_SOON')
      expect(free.retryDelayMs).toBe(COOLDOWN)
      expect(visible(taken)).toEqual(visible(free))
      t.clock.advance(COOLDOWN)
    }
    const free = await failure(requestChange(t, token, PHONES.carol, '192.0.2.52'))
    const taken = await failure(requestChange(t, token, PHONES.bob, '192.0.2.53'))

    expect(free.code).toBe(status.RESOURCE_EXHAUSTED)
    expect(free.reason).toBe('NUMBER_SEND_LIMIT')
    expect(free.retryDelayMs).toBe(start + HOUR - t.clock.now())
    expect(visible(taken)).toEqual(visible(free))
    expect(t.sms.sentTo(PHONES.carol)).toHaveLength(5)
    // The per-number cap counted the phone change codes with the other sends to that number.
    const register = await failure(t.client.register({ phoneNumber: PHONES.carol }))
    expect(register.reason).toBe('NUMBER_SEND_LIMIT')
  })

  it('when one client asks for more codes than its hourly cap, then CLIENT_SEND_LIMIT, and sends to taken numbers count like sends to free ones', async () => {
    const t = await startTestServer({ config: { sendsPerClientPerHour: 2 } })
    await signUpVerified(t, PHONES.bob, 'bob password', '198.51.100.1')
    await signUpVerified(t, PHONES.carol, 'carol password', '198.51.100.2')
    await signUpVerified(t, PHONES.alice, PASSWORD, '198.51.100.3')
    t.clock.advance(COOLDOWN)
    const token = (await loginWithPassword(t, PHONES.alice, PASSWORD, ME)).sessionToken

    // One client sends to two taken numbers, another to two free ones.
    await requestChange(t, token, PHONES.bob, '203.0.113.1')
    await requestChange(t, token, PHONES.carol, '203.0.113.1')
    await requestChange(t, token, FREE[0], '203.0.113.2')
    await requestChange(t, token, FREE[1], '203.0.113.2')
    const afterTaken = await failure(requestChange(t, token, PHONES.dave, '203.0.113.1'))
    const afterFree = await failure(requestChange(t, token, PHONES.alice, '203.0.113.2'))

    expect(afterTaken.code).toBe(status.RESOURCE_EXHAUSTED)
    expect(afterTaken.reason).toBe('CLIENT_SEND_LIMIT')
    expect(afterTaken.retryDelayMs).toBeGreaterThanOrEqual(HOUR / 2)
    expect(visible(afterFree)).toEqual(visible(afterTaken))
    expect(t.sms.sentTo(PHONES.dave)).toEqual([])
    await requestChange(t, token, PHONES.dave, '203.0.113.3')
    expect(t.sms.sentTo(PHONES.dave)).toHaveLength(1)
  })

  it('when the login is older than the privileged window, then RequestPhoneChange and ChangePhoneNumber are FAILED_PRECONDITION REAUTHENTICATION_REQUIRED; a new login makes the same code work', async () => {
    const t = await startTestServer()
    const old = await account(t, PHONES.alice)

    t.clock.advance(WINDOW - 1)
    await requestChange(t, old, PHONES.carol)
    const code = t.sms.lastCodeFor(PHONES.carol, 'phone_change')
    t.clock.advance(1)
    const request = await failure(requestChange(t, old, PHONES.dave))
    const apply = await failure(change(t, old, PHONES.carol, code))

    for (const err of [request, apply]) {
      expect(err.code).toBe(status.FAILED_PRECONDITION)
      expect(err.reason).toBe('REAUTHENTICATION_REQUIRED')
      expect(err.domain).toBe('otpauth')
    }
    expect(visible(apply)).toEqual(visible(request))
    expect(t.sms.sentTo(PHONES.dave)).toEqual([])
    // The session itself is still live, on the old number.
    expect((await t.client.validateSession({ sessionToken: old })).phoneNumber).toBe(PHONES.alice)

    const fresh = (await loginWithPassword(t, PHONES.alice, PASSWORD, ME)).sessionToken
    expect(await change(t, fresh, PHONES.carol, code)).toEqual({ phoneNumber: PHONES.carol })
    // The stale session was another session of the account: it ended with the change.
    const ended = await failure(t.client.validateSession({ sessionToken: old }))
    expect(ended.reason).toBe('SESSION_INVALID')
  })

  it('when the token names no live session, then both calls are UNAUTHENTICATED; a malformed request field is INVALID_ARGUMENT first', async () => {
    const t = await startTestServer()
    const token = await account(t, PHONES.alice)
    await t.client.logout({ sessionToken: token, allSessions: false })

    const unknown = await failure(requestChange(t, 'A'.repeat(43), PHONES.carol))
    const ended = await failure(change(t, token, PHONES.carol, '123456'))
    const malformed = await failure(requestChange(t, 'not a token', PHONES.carol))
    const badPhone = await failure(requestChange(t, 'not a token', '12'))
    const badCode = await failure(change(t, 'not a token', PHONES.carol, '12'))

    expect([unknown.code, unknown.reason]).toEqual([status.UNAUTHENTICATED, 'SESSION_INVALID'])
    expect(visible(ended)).toEqual(visible(unknown))
    expect([malformed.code, malformed.reason]).toEqual([
      status.UNAUTHENTICATED,
      'INVALID_SESSION_TOKEN',
    ])
    expect([badPhone.code, badPhone.reason]).toEqual([
      status.INVALID_ARGUMENT,
      'INVALID_PHONE_NUMBER',
    ])
    expect([badCode.code, badCode.reason]).toEqual([status.INVALID_ARGUMENT, 'INVALID_CODE_FORMAT'])
    expect(badCode.violations.map((v) => v.field)).toEqual(['code'])
    expect(t.sms.sentTo(PHONES.carol)).toEqual([])
    // The BadRequest field is the request's own field name, for both RPCs.
    const badChangePhone = await failure(change(t, 'not a token', '12', '123456'))
    expect(badChangePhone.reason).toBe('INVALID_PHONE_NUMBER')
    expect(badPhone.violations.map((v) => v.field)).toEqual(['new_phone_number'])
    expect(badChangePhone.violations.map((v) => v.field)).toEqual(['new_phone_number'])
  })

  it('when the notice to the old number cannot be sent, then the change still succeeds', async () => {
    const t = await startTestServer()
    const token = await account(t, PHONES.alice)
    await requestChange(t, token, PHONES.carol)
    const code = t.sms.lastCodeFor(PHONES.carol, 'phone_change')
    // failNext(1): the next send, whatever it is, is refused by the provider.
    t.sms.failNext(1)

    const changed = await change(t, token, PHONES.carol, code)

    expect(changed).toEqual({ phoneNumber: PHONES.carol })
    expect(notices(t, PHONES.alice)).toEqual([])
    expect((await t.client.validateSession({ sessionToken: token })).phoneNumber).toBe(PHONES.carol)
    // The notice was the send that failed: the next one goes through.
    t.clock.advance(COOLDOWN)
    await t.client.requestLoginCode({ phoneNumber: PHONES.carol })
    expect(t.sms.lastCodeFor(PHONES.carol, 'login')).toMatch(/^\d{6}$/)
  })
})
