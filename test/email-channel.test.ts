import { request as httpRequest } from 'node:http'
import { status } from '@grpc/grpc-js'
import { describe, expect, it } from 'vitest'
import type { EmailMessage } from '../src/auth/email-sender.js'
import { Channel, type OtpAuthError } from '../src/client/otpauth-client.js'
import {
  expectFailure,
  expectInvalidCredentials,
  expectSessionInvalid,
  failure,
  ksDistance,
  loginWithCode,
  loginWithPassword,
  median,
  PHONES,
  providerLatency,
  quantiles,
  queryRow,
  seeded,
  signUpVerified,
  startTestServer,
  STORE,
  visible,
  wrong,
  type TestServer,
  timePairs,
} from './harness.js'

const PASSWORD = 'email channel password'
const HOUR = 3_600_000
const DAY = 86_400_000
const WINDOW = 600_000
const COOLDOWN = 30_000
const TTL = 300_000
/** How long a transient refusal marks its key (no Retry-After from the test sender). */
const FAILING_MARK = 10_000
const ME = '198.51.100.60'
const ANA = 'ana@example.com'
const ANA_NEW = 'ana.new@example.org'
const BEN = 'ben@example.net'
/** A valid UK mobile nobody in a test has signed up with unless it says so. */
const FREE = '+447911123457'

/** account signs a number up with a password and logs in from `ip`: a fresh, privileged session. */
async function account(t: TestServer, phone: string, ip = ME): Promise<string> {
  await signUpVerified(t, phone, PASSWORD)
  return (await loginWithPassword(t, phone, PASSWORD, ip)).sessionToken
}

function addEmail(t: TestServer, token: string, email: string, ip = ME) {
  return t.client.addEmail({ sessionToken: token, email }, t.as(ip))
}

function verifyEmail(t: TestServer, token: string, code: string, ip = ME) {
  return t.client.verifyEmail({ sessionToken: token, code }, t.as(ip))
}

function emailLoginCode(t: TestServer, phone: string, ip = ME) {
  return t.client.requestLoginCode({ phoneNumber: phone, channel: Channel.CHANNEL_EMAIL }, t.as(ip))
}

/** withEmail gives a fresh account on `phone` the verified address `address`; returns its token. */
async function withEmail(t: TestServer, phone: string, address: string): Promise<string> {
  const token = await account(t, phone)
  await addEmail(t, token, address)
  await verifyEmail(t, token, t.email.lastCodeFor(address, 'email_verify'))
  return token
}

function mails(t: TestServer, address: string, purpose: EmailMessage['purpose']): EmailMessage[] {
  return t.email.sentTo(address).filter((m) => m.purpose === purpose)
}

/** The address the store holds for the account on `phone` (null: none). */
async function storedEmail(t: TestServer, phone: string): Promise<unknown> {
  return (await queryRow(t, `select email from users where phone = '${phone}'`))['email']
}

/** expectCodeMail checks that a code email carries its code in the subject, the text and the html. */
function expectCodeMail(mail: EmailMessage | undefined, purpose: EmailMessage['purpose']): string {
  expect(mail?.purpose).toBe(purpose)
  const code = mail?.code ?? ''
  expect(code).toMatch(/^\d{6}$/)
  expect(mail?.subject).toBe(`${code} is your OtpAuth code`)
  expect(mail?.text).toContain(code)
  expect(mail?.html).toContain(`<strong>${code}</strong>`)
  return code
}

describe('Email as a second channel', () => {
  describe('AddEmail', () => {
    it("when a privileged session adds an address, then the answer is 'OTP sent to email address' with the code's times, and one email_verify email carries the code in its subject, text and html", async () => {
      const t = await startTestServer()
      const token = await account(t, PHONES.alice)
      const smsBefore = t.sms.messages.length

      const sent = await addEmail(t, token, 'Ana.Smith@Example.COM')

      expect(sent).toEqual({
        message: 'OTP sent to email address',
        codeExpiresAt: new Date(t.clock.now() + TTL),
        resendAvailableAt: new Date(t.clock.now() + COOLDOWN),
      })
      // The domain is lower-cased; the local part is kept as given.
      const [mail, ...more] = t.email.messages
      expect(more).toEqual([])
      expect(mail?.to).toBe('Ana.Smith@example.com')
      const code = expectCodeMail(mail, 'email_verify')
      expect(mail?.text).toContain('add this email address')
      expect(t.sms.messages.length).toBe(smsBefore)
      // Added only once verified.
      expect(await storedEmail(t, PHONES.alice)).toBeNull()
      expect(await verifyEmail(t, token, code)).toEqual({ email: 'Ana.Smith@example.com' })
      expect(await storedEmail(t, PHONES.alice)).toBe('Ana.Smith@example.com')
    })

    it('when the login is older than the privileged window, then AddEmail is FAILED_PRECONDITION REAUTHENTICATION_REQUIRED and sends nothing; at window - 1 ms it sends, and VerifyEmail needs only a live session', async () => {
      const t = await startTestServer()
      const old = await account(t, PHONES.alice)

      t.clock.advance(WINDOW - 1)
      await addEmail(t, old, ANA)
      const code = t.email.lastCodeFor(ANA, 'email_verify')
      t.clock.advance(1)
      const stale = await failure(addEmail(t, old, BEN))

      expectFailure(stale, status.FAILED_PRECONDITION, 'REAUTHENTICATION_REQUIRED')
      expect(t.email.sentTo(BEN)).toEqual([])
      // The code sent within the window is verified by the same (now stale, still live) session.
      t.clock.advance(60_000)
      expect(await verifyEmail(t, old, code)).toEqual({ email: ANA })
      // A new login opens a new window.
      const fresh = (await loginWithPassword(t, PHONES.alice, PASSWORD, ME)).sessionToken
      await addEmail(t, fresh, BEN)
      expect(mails(t, BEN, 'email_verify')).toHaveLength(1)
    })

    it('when the address is not one plain mailbox, then INVALID_ARGUMENT INVALID_EMAIL on field email, checked before the session, and nothing is sent', async () => {
      const t = await startTestServer()
      const token = await account(t, PHONES.alice)
      const stale = await account(t, PHONES.bob)
      t.clock.advance(WINDOW)
      const fresh = (await loginWithPassword(t, PHONES.alice, PASSWORD, ME)).sessionToken
      const local64 = 'l'.repeat(64)
      // 254 characters: the longest address RFC 5321 allows (a 256-octet path with its brackets).
      const longest = `${local64}@${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(57)}.com`
      expect(longest).toHaveLength(254)
      const bad = [
        '',
        '   ',
        'ana.example.com',
        'ana@@example.com',
        'ana@b@example.com',
        'ana smith@example.com',
        'ana@exa mple.com',
        'ana\t@example.com',
        'Ana <ana@example.com>',
        '<ana@example.com>',
        '"Ana" ana@example.com',
        '"ana"@example.com',
        'ana@example.com (Ana)',
        'ana@example.com,eve@evil.test',
        'ana@example.com, eve@evil.test',
        'ana@example.com;eve@evil.test',
        'ana@example.com\r\nBcc: eve@evil.test',
        'ana@example.com\nBcc: eve@evil.test',
        'ana\r\n@example.com',
        'ana@exam\rple.com',
        '@example.com',
        'ana@',
        'ana@.com',
        'ana@example.',
        'ana@-example.com',
        `${longest.slice(0, -4)}d.com`,
        `${'l'.repeat(65)}@example.com`,
        `${'l'.repeat(300)}@example.com`,
        `ana@${'b'.repeat(64)}.com`,
      ]
      expect(bad.at(-4)).toHaveLength(255)

      for (const email of bad) {
        for (const session of [fresh, stale, 'not a token', 'A'.repeat(43)]) {
          const err = await failure(addEmail(t, session, email))
          expectFailure(err, status.INVALID_ARGUMENT, 'INVALID_EMAIL')
          expect(
            err.violations.map((v) => v.field),
            JSON.stringify(email),
          ).toEqual(['email'])
        }
      }
      expect(t.email.messages).toEqual([])

      // The edges themselves are addresses: 64 characters before the @, 254 in all.
      await addEmail(t, fresh, `${local64}@example.com`)
      await addEmail(t, fresh, longest)
      expect(t.email.messages.map((m) => m.to)).toEqual([`${local64}@example.com`, longest])
      // A valid address with a session that cannot add one: the session is what fails.
      const staleErr = await failure(addEmail(t, stale, ANA))
      expectFailure(staleErr, status.FAILED_PRECONDITION, 'REAUTHENTICATION_REQUIRED')
      expectFailure(
        await failure(addEmail(t, 'not a token', ANA)),
        status.UNAUTHENTICATED,
        'INVALID_SESSION_TOKEN',
      )
      await t.client.logout({ sessionToken: token, allSessions: false })
      expectSessionInvalid(await failure(addEmail(t, token, ANA)))
      expectSessionInvalid(await failure(addEmail(t, 'A'.repeat(43), ANA)))
      expect(t.email.sentTo(ANA)).toEqual([])
    })

    it('when the same address is asked for again within the cooldown, then RESEND_TOO_SOON, whichever account asks; another address is not held up', async () => {
      const t = await startTestServer()
      const alice = await account(t, PHONES.alice)
      const bob = await account(t, PHONES.bob)
      await addEmail(t, alice, ANA)
      t.clock.advance(10_000)

      const again = await failure(addEmail(t, alice, ANA, '192.0.2.1'))
      const byBob = await failure(addEmail(t, bob, ANA, '192.0.2.2'))

      expectFailure(again, status.RESOURCE_EXHAUSTED, 'RESEND_TOO_SOON')
      expect(again.retryDelayMs).toBe(COOLDOWN - 10_000)
      expect(visible(byBob)).toEqual(visible(again))
      await addEmail(t, bob, BEN)
      expect(t.email.messages.map((m) => m.to)).toEqual([ANA, BEN])
      t.clock.advance(COOLDOWN - 10_000)
      await addEmail(t, bob, ANA)
      expect(mails(t, ANA, 'email_verify')).toHaveLength(2)
    })
    it('when the address holds a control character, then INVALID_EMAIL on field email and nothing is sent', async () => {
      const t = await startTestServer()
      const token = await account(t, PHONES.alice)
      const controls = ['\u0000', '\u0001', '\u0007', '\u001b', '\u007f', '\u0085', '\u009b']

      const answers = []
      for (const c of controls) {
        const [r] = await Promise.allSettled([addEmail(t, token, `an${c}a@example.com`)])
        const err = r.status === 'rejected' ? (r.reason as OtpAuthError) : undefined
        answers.push(err === undefined ? 'OK' : `${err.reason}:${err.violations[0]?.field}`)
      }

      expect(answers).toEqual(controls.map(() => 'INVALID_EMAIL:email'))
      expect(t.email.messages).toEqual([])
    })

    it('when the same mailbox is asked for with another letter case within the cooldown, then RESEND_TOO_SOON as for the same spelling', async () => {
      const t = await startTestServer()
      const token = await account(t, PHONES.alice)
      await addEmail(t, token, ANA)
      const same = await failure(addEmail(t, token, ANA))

      const otherCase = await Promise.allSettled(
        ['Ana@example.com', 'ANA@example.com', 'aNa@Example.COM'].map((a) => addEmail(t, token, a)),
      )

      expect(same.reason).toBe('RESEND_TOO_SOON')
      for (const r of otherCase) {
        expect(r.status).toBe('rejected')
        if (r.status === 'rejected')
          expect(visible(r.reason as OtpAuthError)).toEqual(visible(same))
      }
      expect(t.email.messages).toHaveLength(1)
    })
  })

  describe('VerifyEmail', () => {
    it('when wrong codes are given, then each is UNAUTHENTICATED INVALID_CREDENTIALS and the third locks the client out (the right code too, and Login); another client then verifies with the right code', async () => {
      const t = await startTestServer()
      const token = await account(t, PHONES.alice)
      await addEmail(t, token, ANA)
      const code = t.email.lastCodeFor(ANA, 'email_verify')
      const attacker = '203.0.113.70'

      for (let i = 1; i <= 3; i += 1) {
        const err = await failure(verifyEmail(t, token, wrong(code), attacker))
        expectInvalidCredentials(err)
        expect(err.message).toBe('invalid phone number or credentials')
      }

      const locked = await failure(verifyEmail(t, token, code, attacker))
      expectFailure(locked, status.RESOURCE_EXHAUSTED, 'CLIENT_LOCKED_OUT')
      expect(locked.retryDelayMs).toBeGreaterThan(HOUR - 2_000)
      const login = await failure(loginWithPassword(t, PHONES.alice, PASSWORD, attacker))
      expect(login.reason).toBe('CLIENT_LOCKED_OUT')
      expect(await storedEmail(t, PHONES.alice)).toBeNull()
      // Three wrong tries are fewer than the code allows: it still works from elsewhere.
      expect(await verifyEmail(t, token, code, '198.51.100.61')).toEqual({ email: ANA })
      expect(await storedEmail(t, PHONES.alice)).toBe(ANA)
    })

    it('when VerifyOtp and Login failures come first, then a VerifyEmail failure adds to the same lockout count', async () => {
      const t = await startTestServer()
      const token = await account(t, PHONES.alice)
      await addEmail(t, token, ANA)
      const code = t.email.lastCodeFor(ANA, 'email_verify')
      const attacker = '203.0.113.71'

      await failure(
        t.client.verifyOtp({ phoneNumber: PHONES.dave, code: '000000' }, t.as(attacker)),
      )
      await failure(loginWithPassword(t, PHONES.bob, 'not the password', attacker))
      expectInvalidCredentials(await failure(verifyEmail(t, token, wrong(code), attacker)))

      const locked = await failure(verifyEmail(t, token, code, attacker))
      expect(locked.reason).toBe('CLIENT_LOCKED_OUT')
    })

    it("when another account's session gives the code, then it fails like a wrong code and both owners' codes still work", async () => {
      const t = await startTestServer()
      const alice = await account(t, PHONES.alice)
      const bob = await account(t, PHONES.bob)
      await addEmail(t, alice, ANA)
      await addEmail(t, bob, BEN)
      const aliceCode = t.email.lastCodeFor(ANA, 'email_verify')
      const bobCode = t.email.lastCodeFor(BEN, 'email_verify')
      const plainWrong = await failure(verifyEmail(t, bob, wrong(bobCode), '192.0.2.10'))

      const bobWithAlices = await failure(verifyEmail(t, bob, aliceCode, '192.0.2.11'))
      // Carol has nothing pending at all.
      const carol = await account(t, PHONES.carol)
      const carolWithAlices = await failure(verifyEmail(t, carol, aliceCode, '192.0.2.12'))

      expectInvalidCredentials(plainWrong)
      expect(visible(bobWithAlices)).toEqual(visible(plainWrong))
      expect(visible(carolWithAlices)).toEqual(visible(plainWrong))
      expect(await storedEmail(t, PHONES.bob)).toBeNull()
      expect(await storedEmail(t, PHONES.carol)).toBeNull()
      expect(await verifyEmail(t, alice, aliceCode)).toEqual({ email: ANA })
      expect(await verifyEmail(t, bob, bobCode)).toEqual({ email: BEN })
      expect(await storedEmail(t, PHONES.alice)).toBe(ANA)
      expect(await storedEmail(t, PHONES.bob)).toBe(BEN)
    })

    it('when a second AddEmail names another address, then it replaces the pending one: the first code fails, the second verifies the second address', async () => {
      const t = await startTestServer()
      const token = await account(t, PHONES.alice)
      await addEmail(t, token, ANA)
      const first = t.email.lastCodeFor(ANA, 'email_verify')
      await addEmail(t, token, BEN)
      const second = t.email.lastCodeFor(BEN, 'email_verify')
      expect(second).not.toBe(first)

      expectInvalidCredentials(await failure(verifyEmail(t, token, first, '192.0.2.20')))
      expect(await verifyEmail(t, token, second)).toEqual({ email: BEN })
      expect(await storedEmail(t, PHONES.alice)).toBe(BEN)
      // Used up.
      expectInvalidCredentials(await failure(verifyEmail(t, token, second, '192.0.2.21')))
      expect(t.email.messages.filter((m) => m.purpose === 'email_change_notice')).toEqual([])
    })

    it('when a verified address is replaced, then the new one takes effect only once verified, and the old one gets one email_change_notice with no code; the same address again gets none', async () => {
      const t = await startTestServer()
      const token = await withEmail(t, PHONES.alice, ANA)
      const notices = () => t.email.messages.filter((m) => m.purpose === 'email_change_notice')

      await addEmail(t, token, ANA_NEW)
      const code = t.email.lastCodeFor(ANA_NEW, 'email_verify')
      // Pending: login codes still go to the verified address.
      await emailLoginCode(t, PHONES.alice)
      expect(mails(t, ANA, 'login')).toHaveLength(1)
      expect(mails(t, ANA_NEW, 'login')).toEqual([])
      expect(notices()).toEqual([])

      expect(await verifyEmail(t, token, code)).toEqual({ email: ANA_NEW })

      const [notice, ...more] = notices()
      expect(more).toEqual([])
      expect(notice?.to).toBe(ANA)
      expect(notice?.code).toBe('')
      expect(notice?.subject).not.toMatch(/\d{6}/)
      expect(notice?.text).not.toMatch(/\d{6}/)
      expect(notice?.text).not.toContain(code)
      expect(notice?.text).not.toContain(ANA_NEW)
      expect(notice?.html).not.toContain(ANA_NEW)
      expect(await storedEmail(t, PHONES.alice)).toBe(ANA_NEW)
      t.clock.advance(COOLDOWN)
      await emailLoginCode(t, PHONES.alice)
      expect(mails(t, ANA_NEW, 'login')).toHaveLength(1)
      expect(mails(t, ANA, 'login')).toHaveLength(1)

      // The same address verified again: nothing to tell anyone.
      await addEmail(t, token, ANA_NEW)
      expect(await verifyEmail(t, token, t.email.lastCodeFor(ANA_NEW, 'email_verify'))).toEqual({
        email: ANA_NEW,
      })
      expect(notices()).toHaveLength(1)
    })

    it('when the notice to the old address cannot be sent, then the new address is still verified', async () => {
      const t = await startTestServer()
      const token = await withEmail(t, PHONES.alice, ANA)
      await addEmail(t, token, ANA_NEW)
      const code = t.email.lastCodeFor(ANA_NEW, 'email_verify')
      t.email.failNext(1, 'transient')

      expect(await verifyEmail(t, token, code)).toEqual({ email: ANA_NEW })

      expect(mails(t, ANA, 'email_change_notice')).toEqual([])
      expect(await storedEmail(t, PHONES.alice)).toBe(ANA_NEW)
    })

    it('when the code is as old as its lifetime, then it fails like a wrong code; 1 ms before, it works', async () => {
      const t = await startTestServer()
      const alice = await account(t, PHONES.alice)
      const bob = await account(t, PHONES.bob)
      await addEmail(t, alice, ANA)
      await addEmail(t, bob, BEN)
      const aliceCode = t.email.lastCodeFor(ANA, 'email_verify')
      const bobCode = t.email.lastCodeFor(BEN, 'email_verify')
      const plainWrong = await failure(verifyEmail(t, bob, wrong(bobCode), '192.0.2.30'))

      t.clock.advance(TTL - 1)
      expect(await verifyEmail(t, alice, aliceCode)).toEqual({ email: ANA })
      t.clock.advance(1)
      const expired = await failure(verifyEmail(t, bob, bobCode, '192.0.2.31'))

      expect(visible(expired)).toEqual(visible(plainWrong))
      expect(await storedEmail(t, PHONES.bob)).toBeNull()
    })

    it('when the request is malformed or the session is not live, then INVALID_CODE_FORMAT or UNAUTHENTICATED, and nothing changes', async () => {
      const t = await startTestServer()
      const token = await account(t, PHONES.alice)
      await addEmail(t, token, ANA)
      const code = t.email.lastCodeFor(ANA, 'email_verify')
      const other = (await loginWithPassword(t, PHONES.alice, PASSWORD, ME)).sessionToken
      await t.client.logout({ sessionToken: other, allSessions: false })

      const badCode = await failure(verifyEmail(t, 'not a token', '12345'))
      const malformed = await failure(verifyEmail(t, 'not a token', code))
      const unknown = await failure(verifyEmail(t, 'A'.repeat(43), code))
      const ended = await failure(verifyEmail(t, other, code))

      expectFailure(badCode, status.INVALID_ARGUMENT, 'INVALID_CODE_FORMAT')
      expect(badCode.violations.map((v) => v.field)).toEqual(['code'])
      expectFailure(malformed, status.UNAUTHENTICATED, 'INVALID_SESSION_TOKEN')
      expectSessionInvalid(unknown)
      expect(visible(ended)).toEqual(visible(unknown))
      expect(await storedEmail(t, PHONES.alice)).toBeNull()
      // None of those was a try at the code.
      expect(await verifyEmail(t, token, code)).toEqual({ email: ANA })
    })
  })

  describe('RequestLoginCode with channel EMAIL', () => {
    it('when a verified account has a verified address, then the login code goes there by email (not SMS) and Login with it works', async () => {
      const t = await startTestServer()
      await withEmail(t, PHONES.alice, ANA)
      const smsBefore = t.sms.messages.length
      const userId = (await loginWithPassword(t, PHONES.alice, PASSWORD, ME)).userId

      const sent = await emailLoginCode(t, PHONES.alice)

      expect(sent).toEqual({
        message: 'OTP sent to email address',
        codeExpiresAt: new Date(t.clock.now() + TTL),
        resendAvailableAt: new Date(t.clock.now() + COOLDOWN),
      })
      const logins = mails(t, ANA, 'login')
      expect(logins).toHaveLength(1)
      const code = expectCodeMail(logins[0], 'login')
      expect(logins[0]?.text).toContain('login code')
      expect(t.sms.messages.length).toBe(smsBefore)

      const session = await loginWithCode(t, PHONES.alice, code, '198.51.100.62')

      expect(session.userId).toBe(userId)
      const info = await t.client.validateSession({ sessionToken: session.sessionToken })
      expect(info.phoneNumber).toBe(PHONES.alice)
      // Used up.
      expectInvalidCredentials(await failure(loginWithCode(t, PHONES.alice, code, '198.51.100.63')))
    })

    it('when the number has no address, is not verified, or has no account, then the answer is the same as with an address and nothing is sent; the cooldown then refuses each alike', async () => {
      const t = await startTestServer()
      await withEmail(t, PHONES.alice, ANA)
      await account(t, PHONES.bob)
      await t.client.register({ phoneNumber: PHONES.carol, password: PASSWORD })
      const mailsBefore = t.email.messages.length
      const smsBefore = t.sms.messages.length
      const numbers = [PHONES.alice, PHONES.bob, PHONES.carol, PHONES.dave]

      const answers = []
      for (const [i, phone] of numbers.entries()) {
        answers.push(await emailLoginCode(t, phone, `192.0.2.${40 + i}`))
      }
      t.clock.advance(10_000)
      const tooSoon = []
      for (const [i, phone] of numbers.entries()) {
        tooSoon.push(await failure(emailLoginCode(t, phone, `192.0.2.${50 + i}`)))
      }

      for (const answer of answers) expect(answer).toEqual(answers[0])
      expect(t.email.messages.slice(mailsBefore).map((m) => [m.to, m.purpose])).toEqual([
        [ANA, 'login'],
      ])
      expect(t.sms.messages.length).toBe(smsBefore)
      const first = tooSoon[0] as OtpAuthError
      expectFailure(first, status.RESOURCE_EXHAUSTED, 'RESEND_TOO_SOON')
      expect(first.retryDelayMs).toBe(COOLDOWN - 10_000)
      for (const err of tooSoon) expect(visible(err)).toEqual(visible(first))
      expect(t.email.messages.length).toBe(mailsBefore + 1)
      // The pending sign-up's code was not disturbed.
      await t.client.verifyOtp({
        phoneNumber: PHONES.carol,
        code: t.sms.lastCodeFor(PHONES.carol, 'register'),
      })
    })

    it('when codes are asked too often, then the hourly cap per number on this channel refuses them for numbers with and without an address alike', async () => {
      const t = await startTestServer()
      await withEmail(t, PHONES.alice, ANA)
      await account(t, PHONES.bob)
      const start = t.clock.now()

      for (let i = 0; i < 5; i += 1) {
        await emailLoginCode(t, PHONES.alice, `192.0.2.${70 + i}`)
        await emailLoginCode(t, PHONES.bob, `192.0.2.${80 + i}`)
        t.clock.advance(COOLDOWN)
      }
      const withAddress = await failure(emailLoginCode(t, PHONES.alice, '192.0.2.90'))
      const without = await failure(emailLoginCode(t, PHONES.bob, '192.0.2.91'))

      expectFailure(withAddress, status.RESOURCE_EXHAUSTED, 'NUMBER_SEND_LIMIT')
      expect(withAddress.retryDelayMs).toBe(start + HOUR - t.clock.now())
      expect(visible(without)).toEqual(visible(withAddress))
      expect(mails(t, ANA, 'login')).toHaveLength(5)
      // The SMS channel of the same number has its own count.
      await t.client.requestLoginCode({ phoneNumber: PHONES.alice })
      expect(t.sms.sentTo(PHONES.alice).filter((m) => m.purpose === 'login')).toHaveLength(1)
    })

    it('when the channel is a value this version does not know, then INVALID_ARGUMENT INVALID_CHANNEL on field channel, alike for every number, and nothing is sent', async () => {
      const t = await startTestServer()
      await withEmail(t, PHONES.alice, ANA)
      const mailsBefore = t.email.messages.length
      const smsBefore = t.sms.messages.length

      const errors = []
      // Numbers the Channel enum has no member for, as a newer or broken client would send.
      for (const value of [7, 3, -1] as unknown as Channel[]) {
        for (const phone of [PHONES.alice, PHONES.dave]) {
          errors.push(
            await failure(t.client.requestLoginCode({ phoneNumber: phone, channel: value })),
          )
        }
      }

      const first = errors[0] as OtpAuthError
      expectFailure(first, status.INVALID_ARGUMENT, 'INVALID_CHANNEL')
      expect(first.violations.map((v) => v.field)).toEqual(['channel'])
      for (const err of errors) expect(visible(err)).toEqual(visible(first))
      expect(t.email.messages.length).toBe(mailsBefore)
      expect(t.sms.messages.length).toBe(smsBefore)
      // Nothing was charged either: both channels send at once.
      await emailLoginCode(t, PHONES.alice)
      await t.client.requestLoginCode({ phoneNumber: PHONES.alice, channel: Channel.CHANNEL_SMS })
      expect(mails(t, ANA, 'login')).toHaveLength(1)
      expect(t.sms.sentTo(PHONES.alice).filter((m) => m.purpose === 'login')).toHaveLength(1)
    })

    it('when SMS and EMAIL codes are asked for one number, then each channel has its own cooldown (UNSPECIFIED is SMS), and the newer code replaces the older', async () => {
      const t = await startTestServer()
      await withEmail(t, PHONES.alice, ANA)
      // Past the sign-up code's cooldown for SMS.
      t.clock.advance(COOLDOWN)

      await t.client.requestLoginCode({ phoneNumber: PHONES.alice })
      const bySms = t.sms.lastCodeFor(PHONES.alice, 'login')
      await emailLoginCode(t, PHONES.alice)
      const byEmail = t.email.lastCodeFor(ANA, 'login')
      const smsAgain = await failure(
        t.client.requestLoginCode({ phoneNumber: PHONES.alice, channel: Channel.CHANNEL_SMS }),
      )
      const unspecified = await failure(
        t.client.requestLoginCode({
          phoneNumber: PHONES.alice,
          channel: Channel.CHANNEL_UNSPECIFIED,
        }),
      )
      const emailAgain = await failure(emailLoginCode(t, PHONES.alice))

      for (const err of [smsAgain, unspecified, emailAgain]) {
        expectFailure(err, status.RESOURCE_EXHAUSTED, 'RESEND_TOO_SOON')
        expect(err.retryDelayMs).toBe(COOLDOWN)
      }
      expect(t.sms.sentTo(PHONES.alice).filter((m) => m.purpose === 'login')).toHaveLength(1)
      expect(mails(t, ANA, 'login')).toHaveLength(1)
      // One login challenge per number: the emailed code replaced the SMS one.
      expect(byEmail).not.toBe(bySms)
      expectInvalidCredentials(
        await failure(loginWithCode(t, PHONES.alice, bySms, '198.51.100.64')),
      )
      await loginWithCode(t, PHONES.alice, byEmail, '198.51.100.65')
    })

    it('when a login code that came by email logs in, then the email channel can send the next code at once, as SMS can after an SMS code', async () => {
      const t = await startTestServer()
      await withEmail(t, PHONES.alice, ANA)
      t.clock.advance(1)
      await emailLoginCode(t, PHONES.alice)
      t.clock.advance(5_000)

      await loginWithCode(t, PHONES.alice, t.email.lastCodeFor(ANA, 'login'), '198.51.100.67')

      await emailLoginCode(t, PHONES.alice)
      expect(mails(t, ANA, 'login')).toHaveLength(2)
    })
  })

  describe('Email delivery failures', () => {
    it('when the mail server refuses for now, then EMAIL_UNAVAILABLE with RetryInfo, nothing charged, and every path for that key answers alike until the mark ends', async () => {
      const t = await startTestServer()
      const token = await account(t, PHONES.alice)
      t.email.failNext(1, 'transient')

      const refused = await failure(addEmail(t, token, ANA))

      expectFailure(refused, status.UNAVAILABLE, 'EMAIL_UNAVAILABLE')
      expect(refused.retryDelayMs).toBe(FAILING_MARK)
      expect(t.email.messages).toEqual([])
      // Marked: the next try is answered without a send (the server would take it now).
      t.clock.advance(4_000)
      const marked = await failure(addEmail(t, token, ANA, '192.0.2.100'))
      expectFailure(marked, status.UNAVAILABLE, 'EMAIL_UNAVAILABLE')
      expect(marked.retryDelayMs).toBe(FAILING_MARK - 4_000)
      expect(t.email.messages).toEqual([])
      // Only that address.
      await addEmail(t, token, BEN)
      // Nothing was charged: once the mark ends the address gets a code, before any cooldown.
      t.clock.advance(FAILING_MARK - 4_000)
      await addEmail(t, token, ANA)
      expect(await verifyEmail(t, token, t.email.lastCodeFor(ANA, 'email_verify'))).toEqual({
        email: ANA,
      })
    })

    it('when a login email is refused for now, then the number answers EMAIL_UNAVAILABLE on the send and the no-send path alike (the account deleted) until the mark ends; other no-send paths replay a recent send, refused or not', async () => {
      // Which recent send a no-send path replays: 0 the oldest kept, just under 1 the newest.
      let replay = 0
      const t = await startTestServer({ random: () => replay })
      const token = await withEmail(t, PHONES.alice, ANA)
      const loginsBefore = mails(t, ANA, 'login').length
      t.email.failNext(1, 'transient')

      const refused = await failure(emailLoginCode(t, PHONES.alice))
      const again = await failure(emailLoginCode(t, PHONES.alice, '192.0.2.101'))
      await t.client.deleteAccount({ sessionToken: token })
      const noAccount = await failure(emailLoginCode(t, PHONES.alice, '192.0.2.102'))

      expectFailure(refused, status.UNAVAILABLE, 'EMAIL_UNAVAILABLE')
      expect(refused.retryDelayMs).toBe(FAILING_MARK)
      expect(visible(again)).toEqual(visible(refused))
      expect(visible(noAccount)).toEqual(visible(refused))
      expect(mails(t, ANA, 'login')).toHaveLength(loginsBefore)
      // The email sends so far: the AddEmail code (accepted), then the refused login code.
      const replayingAccepted = await emailLoginCode(t, PHONES.dave)
      expect(replayingAccepted.message).toBe('OTP sent to email address')
      replay = 0.99
      const replayingRefused = await failure(emailLoginCode(t, PHONES.carol))
      expect(visible(replayingRefused)).toEqual(visible(refused))
      t.clock.advance(FAILING_MARK)
      replay = 0
      expect(await emailLoginCode(t, PHONES.alice)).toEqual({
        message: 'OTP sent to email address',
        codeExpiresAt: new Date(t.clock.now() + TTL),
        resendAvailableAt: new Date(t.clock.now() + COOLDOWN),
      })
      expect(t.email.messages.filter((m) => m.purpose === 'login')).toHaveLength(loginsBefore)
    })

    it('when the mail server refuses the address for good, then FAILED_PRECONDITION EMAIL_UNDELIVERABLE for a day on every AddEmail to it, whichever account; other addresses work', async () => {
      const t = await startTestServer()
      const alice = await account(t, PHONES.alice)
      const bob = await account(t, PHONES.bob)
      t.email.failNext(1, 'permanent')

      const refused = await failure(addEmail(t, alice, ANA))
      t.clock.advance(COOLDOWN)
      const byBob = await failure(addEmail(t, bob, ANA))

      expectFailure(refused, status.FAILED_PRECONDITION, 'EMAIL_UNDELIVERABLE')
      expect(visible(byBob)).toEqual(visible(refused))
      expect(t.email.messages).toEqual([])
      await addEmail(t, bob, BEN)
      expect(t.email.messages.map((m) => m.to)).toEqual([BEN])
      t.clock.advance(DAY)
      const fresh = (await loginWithPassword(t, PHONES.alice, PASSWORD, ME)).sessionToken
      await addEmail(t, fresh, ANA)
      expect(mails(t, ANA, 'email_verify')).toHaveLength(1)
    })

    it('when a login email is refused for good, then EMAIL_UNDELIVERABLE for that number on this channel; its SMS channel still works', async () => {
      const t = await startTestServer()
      await withEmail(t, PHONES.alice, ANA)
      t.clock.advance(COOLDOWN)
      t.email.failNext(1, 'permanent')

      const refused = await failure(emailLoginCode(t, PHONES.alice))
      t.clock.advance(HOUR)
      const later = await failure(emailLoginCode(t, PHONES.alice))

      expectFailure(refused, status.FAILED_PRECONDITION, 'EMAIL_UNDELIVERABLE')
      expect(visible(later)).toEqual(visible(refused))
      expect(mails(t, ANA, 'login')).toEqual([])
      await t.client.requestLoginCode({ phoneNumber: PHONES.alice })
      expect(t.sms.sentTo(PHONES.alice).filter((m) => m.purpose === 'login')).toHaveLength(1)
    })

    it('when the outcome of a send is unknown, then the answer is OK, the send is charged (cooldown) and its code works if it arrives', async () => {
      // Every code is 424242, so the code of a send the outbox never saw is known.
      const t = await startTestServer({ randomInt: () => 424_242 })
      const token = await account(t, PHONES.alice)
      t.email.failNext(1, 'unknown')

      const sent = await addEmail(t, token, ANA)

      expect(sent).toEqual({
        message: 'OTP sent to email address',
        codeExpiresAt: new Date(t.clock.now() + TTL),
        resendAvailableAt: new Date(t.clock.now() + COOLDOWN),
      })
      expect(t.email.messages).toEqual([])
      const tooSoon = await failure(addEmail(t, token, ANA))
      expectFailure(tooSoon, status.RESOURCE_EXHAUSTED, 'RESEND_TOO_SOON')
      expect(t.logs.text).toContain('send outcome unknown; counted as sent')
      expect(await verifyEmail(t, token, '424242')).toEqual({ email: ANA })

      // The login channel alike.
      t.email.failNext(1, 'unknown')
      expect((await emailLoginCode(t, PHONES.alice)).message).toBe('OTP sent to email address')
      const loginTooSoon = await failure(emailLoginCode(t, PHONES.alice))
      expect(loginTooSoon.reason).toBe('RESEND_TOO_SOON')
      expect(mails(t, ANA, 'login')).toEqual([])
      await loginWithCode(t, PHONES.alice, '424242', '198.51.100.66')
    })
  })

  it('when a user lost their phone, then a login code by email gives a privileged session that moves the account to a new number', async () => {
    const t = await startTestServer()
    // A code-only account (no password), with an email address added while the phone was there.
    await signUpVerified(t, PHONES.alice, undefined, ME)
    t.clock.advance(COOLDOWN)
    await t.client.requestLoginCode({ phoneNumber: PHONES.alice }, t.as(ME))
    const first = await loginWithCode(t, PHONES.alice, t.sms.lastCodeFor(PHONES.alice, 'login'), ME)
    await addEmail(t, first.sessionToken, ANA)
    await verifyEmail(t, first.sessionToken, t.email.lastCodeFor(ANA, 'email_verify'))
    // Weeks later the phone is gone; a new device, a new address.
    t.clock.advance(30 * DAY)
    const device = '203.0.113.80'
    const smsToOld = t.sms.sentTo(PHONES.alice).length

    await emailLoginCode(t, PHONES.alice, device)
    const session = await loginWithCode(t, PHONES.alice, t.email.lastCodeFor(ANA, 'login'), device)
    await t.client.requestPhoneChange(
      { sessionToken: session.sessionToken, newPhoneNumber: PHONES.carol },
      t.as(device),
    )
    const changed = await t.client.changePhoneNumber(
      {
        sessionToken: session.sessionToken,
        newPhoneNumber: PHONES.carol,
        code: t.sms.lastCodeFor(PHONES.carol, 'phone_change'),
      },
      t.as(device),
    )

    expect(changed).toEqual({ phoneNumber: PHONES.carol })
    expect(session.userId).toBe(first.userId)
    const info = await t.client.validateSession({ sessionToken: session.sessionToken })
    expect(info).toMatchObject({ userId: first.userId, phoneNumber: PHONES.carol })
    // Only the notice went to the lost phone.
    expect(
      t.sms
        .sentTo(PHONES.alice)
        .slice(smsToOld)
        .map((m) => m.purpose),
    ).toEqual(['phone_change_notice'])
    // The address moved with the account: it serves the new number, not the old one.
    t.clock.advance(COOLDOWN)
    const loginsBefore = mails(t, ANA, 'login').length
    await emailLoginCode(t, PHONES.alice, device)
    expect(mails(t, ANA, 'login')).toHaveLength(loginsBefore)
    await emailLoginCode(t, PHONES.carol, device)
    expect(mails(t, ANA, 'login')).toHaveLength(loginsBefore + 1)
    expect(await storedEmail(t, PHONES.carol)).toBe(ANA)
  })

  it('when an account is deleted, then its pending AddEmail code is gone (it verifies nothing after the number signs up again) and its address no longer gets login codes', async () => {
    const t = await startTestServer()
    const token = await withEmail(t, PHONES.alice, ANA)
    const oldUser = (await t.client.validateSession({ sessionToken: token })).userId
    await addEmail(t, token, BEN)
    const pending = t.email.lastCodeFor(BEN, 'email_verify')

    await t.client.deleteAccount({ sessionToken: token })

    if (STORE === 'postgres') {
      // Gone from the shared store, not only unusable.
      expect(
        await queryRow(
          t,
          `select count(*) as n from codes where purpose = 'email_verify' and phone = '${oldUser}'`,
        ),
      ).toEqual({ n: 0 })
    }
    t.clock.advance(COOLDOWN)
    const again = await account(t, PHONES.alice)
    expectInvalidCredentials(await failure(verifyEmail(t, again, pending, '192.0.2.110')))
    expect(await storedEmail(t, PHONES.alice)).toBeNull()
    const loginsBefore = mails(t, ANA, 'login').length
    await emailLoginCode(t, PHONES.alice)
    expect(mails(t, ANA, 'login')).toHaveLength(loginsBefore)
    // The new account adds an address of its own as usual.
    await addEmail(t, again, BEN)
    expect(await verifyEmail(t, again, t.email.lastCodeFor(BEN, 'email_verify'))).toEqual({
      email: BEN,
    })
  })

  it('when AddEmail and VerifyEmail are called at their REST paths with snake_case JSON, then they answer 200 with proto field names; failures map to 400 and 401', async () => {
    const t = await startTestServer({ config: { httpAddress: '127.0.0.1:0' } })
    await signUpVerified(t, PHONES.alice, PASSWORD)
    const login = await rest(t, '/api/login', { phone_number: PHONES.alice, password: PASSWORD })
    const token = String(login.body['session_token'])

    const added = await rest(t, '/api/email/add', { session_token: token, email: ANA })
    expect(added.status).toBe(200)
    expect(Object.keys(added.body).sort()).toEqual(
      ['code_expires_at', 'message', 'resend_available_at'].sort(),
    )
    expect(added.body['message']).toBe('OTP sent to email address')
    expect(new Date(String(added.body['code_expires_at'])).getTime()).toBe(t.clock.now() + TTL)
    const code = t.email.lastCodeFor(ANA, 'email_verify')

    const badEmail = await rest(t, '/api/email/add', { session_token: token, email: 'A <a@b.c>' })
    expect(badEmail.status).toBe(400)
    expect(detail(badEmail, 'ErrorInfo')?.['reason']).toBe('INVALID_EMAIL')
    expect(detail(badEmail, 'BadRequest')?.['field_violations']).toEqual([
      expect.objectContaining({ field: 'email' }),
    ])
    const wrongCode = await rest(t, '/api/email/verify', {
      session_token: token,
      code: wrong(code),
    })
    expect(wrongCode.status).toBe(401)
    expect(detail(wrongCode, 'ErrorInfo')?.['reason']).toBe('INVALID_CREDENTIALS')

    const verified = await rest(t, '/api/email/verify', { session_token: token, code })
    expect(verified).toMatchObject({ status: 200, body: { email: ANA } })
    expect(Object.keys(verified.body)).toEqual(['email'])

    // The login code by email at the REST door: the channel by its enum name.
    const byEmail = await rest(t, '/api/login/code', {
      phone_number: PHONES.alice,
      channel: 'CHANNEL_EMAIL',
    })
    expect(byEmail.status).toBe(200)
    expect(mails(t, ANA, 'login')).toHaveLength(1)
  })

  it('when email sends take a realistic time, then RequestLoginCode(EMAIL) for a number without an address takes as long as for one with (medians and KS distance over alternating pairs)', async () => {
    // A mail relay that accepts a message in ~60 ms with a log-normal spread, from a fixed seed.
    const pairs = 60
    const warmUp = 20
    const medianToleranceMs = 15
    // Two-sample KS critical value at alpha = 0.001 for n = m = pairs: 1.95 * sqrt(2 / n).
    const ksBound = 1.95 * Math.sqrt(2 / pairs)
    const t = await startTestServer({
      config: { resendCooldownSeconds: 0, sendsPerNumberPerHour: 100 },
    })
    // Two numbers of each kind, taken turns: each stays under the hourly cap of 100 sends.
    const withAddress = [PHONES.alice, PHONES.bob]
    const without = [PHONES.carol, FREE]
    await withEmail(t, PHONES.alice, ANA)
    await withEmail(t, PHONES.bob, BEN)
    for (const phone of without) await account(t, phone)
    t.email.delayMs = providerLatency(seeded(20_260_110), 60, 0.4)

    const [sent, paced] = await timePairs(
      [withAddress, without],
      (phone) => emailLoginCode(t, phone),
      { pairs, warmUp },
    )

    expect(t.email.messages.filter((m) => m.purpose === 'login')).toHaveLength(warmUp + pairs)
    const d = ksDistance(sent, paced)
    const medianGap = Math.abs(median(sent) - median(paced))
    console.log(
      `email login code timing (${pairs} pairs, email ~60 ms log-normal sigma 0.4): with address ` +
        `${quantiles(sent)}; without ${quantiles(paced)}; median gap ${medianGap.toFixed(1)} ms ` +
        `(tolerance ${medianToleranceMs}); KS D ${d.toFixed(3)} (bound ${ksBound.toFixed(3)})`,
    )
    expect(medianGap).toBeLessThanOrEqual(medianToleranceMs)
    expect(d).toBeLessThan(ksBound)
  }, 120_000)
})

interface RestAnswer {
  status: number
  body: Record<string, unknown>
}

/** rest POSTs JSON to the REST door, as a browser or curl would. */
function rest(t: TestServer, path: string, body: unknown): Promise<RestAnswer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: '127.0.0.1',
        port: t.app.httpPort,
        method: 'POST',
        path,
        headers: { 'content-type': 'application/json' },
      },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8')
          resolve({
            status: res.statusCode ?? 0,
            body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>),
          })
        })
      },
    )
    req.on('error', reject)
    req.end(JSON.stringify(body))
  })
}

/** detail finds one google.rpc detail (ErrorInfo, BadRequest…) in a REST error body. */
function detail(answer: RestAnswer, type: string): Record<string, unknown> | undefined {
  const details = answer.body['details'] as Record<string, unknown>[] | undefined
  return details?.find((d) => d['@type'] === `type.googleapis.com/google.rpc.${type}`)
}
