import type { Logger } from 'pino'
import { AuthError } from './auth-error.js'
import type {
  AnswerResult,
  AuthStore,
  CodeStore,
  SendLimiter,
  SessionProof,
  SessionRecord,
  User,
} from './auth-store.js'
import type { ClientLockout } from './client-lockout.js'
import type { Clock } from './clock.js'
import {
  generateCode,
  parseCode,
  type CodeHasher,
  type CodePurpose,
  type RandomInt,
} from './one-time-code.js'
import { parseLoginPassword, parseNewPassword, type PasswordHasher } from './password.js'
import type { PhoneParser } from './phone.js'
import { mailboxKey, parseEmail } from './email-address.js'
import type { EmailSender } from './email-sender.js'
import type { Messages } from './messages.js'
import type { SendPacer } from './send-pacer.js'
import {
  hashSessionToken,
  isSessionToken,
  newSessionToken,
  parseSessionId,
  parseSessionToken,
  type RandomBytes,
} from './session-token.js'
import { failureKind, SmsSendError, type SmsSender } from './sms-sender.js'

export interface AuthPolicy {
  codeTtlMs: number
  /** Tries a code allows before it is burned. */
  codeMaxAttempts: number
  sessionTtlMs: number
  /** Consecutive failed logins per number before password login is refused (NIST: at most 100). */
  numberFailureLimit: number
  /** How long after its login a session may make sensitive changes. */
  privilegedSessionMs: number
  /** Countries whose numbers may be sent codes (ISO 3166); undefined: all. */
  allowedCountries: ReadonlySet<string> | undefined
  /** Numbers that never reach a provider and always get their fixed code (E.164 → code). */
  testNumbers: ReadonlyMap<string, string>
}

// How long every path for a number answers SMS_UNAVAILABLE after the provider refused it for now
// (at least; longer when the provider asks), and how long a number it called undeliverable is
// believed. Marks end by themselves, so a number recovers without anyone's help.
const FAILING_MARK_MS = 10_000
const FAILING_MARK_MAX_MS = 600_000
const UNDELIVERABLE_MARK_MS = 86_400_000

// ListSessions answers at most this many: an answer stays far below the 16 KiB message cap.
export const SESSION_LIST_LIMIT = 100

export interface AuthServiceDeps {
  phones: PhoneParser
  store: AuthStore
  sms: SmsSender
  clock: Clock
  randomInt: RandomInt
  randomBytes: RandomBytes
  newId: () => string
  hasher: PasswordHasher
  codes: CodeStore
  codeHasher: CodeHasher
  /** Send limits and, for SMS, the spend ceilings (global, per country, per prefix). */
  throttle: SendLimiter
  lockout: ClientLockout
  pacer: SendPacer
  email: EmailSender
  /** The email no-send paths replay email send times: mail servers are not SMS gateways. */
  emailPacer: SendPacer
  messages: Messages
  policy: AuthPolicy
  log: Logger
}

/** Where a code goes. */
type Destination = { channel: 'sms'; phone: string } | { channel: 'email'; address: string }

/** A code to send: what it is for, where its challenge is kept, what it carries. */
interface CodeOrder {
  purpose: CodePurpose
  challenge: ChallengeKey
  to: Destination
  passwordHash?: string | null
  target?: string | null
}

/** What a send path may do once its send is reserved: send a code, or answer as if it had. */
interface SendTicket {
  code(order: CodeOrder): Promise<void>
  nothing(): Promise<void>
}

const UNDELIVERABLE = { sms: 'PHONE_NUMBER_UNDELIVERABLE', email: 'EMAIL_UNDELIVERABLE' } as const
const UNAVAILABLE = { sms: 'SMS_UNAVAILABLE', email: 'EMAIL_UNAVAILABLE' } as const

/** Who is calling: the key limits and lockouts are counted against (see clientKey). */
export interface Caller {
  clientKey: string
}

export interface CodeSent {
  codeExpiresAt: number
  resendAvailableAt: number
}

export interface Session {
  token: string
  userId: string
  expiresAt: number
}

/** A live session as ListSessions shows it. */
export interface ListedSession extends SessionRecord {
  /** True for the session whose token made the call. */
  current: boolean
}

export type Credential = { kind: 'password'; value: string } | { kind: 'code'; value: string }

/**
 * AuthService holds the rules of sign-up and login. Each method validates its input, applies the
 * limits and answers in domain terms; failures are AuthErrors.
 */
export class AuthService {
  readonly #d: AuthServiceDeps
  readonly #phones: PhoneParser

  constructor(deps: AuthServiceDeps) {
    this.#d = deps
    this.#phones = deps.phones
  }

  /**
   * register sends a sign-up code and creates or refreshes the pending account. A verified number
   * gets the same answer, in the same time, and nothing changes.
   * Throws INVALID_PHONE_NUMBER, COUNTRY_NOT_ALLOWED, INVALID_PASSWORD, RESEND_TOO_SOON,
   * NUMBER_SEND_LIMIT, CLIENT_SEND_LIMIT, SMS_UNAVAILABLE, PHONE_NUMBER_UNDELIVERABLE.
   */
  async register(
    input: { phone: string; password: string | undefined },
    caller: Caller,
  ): Promise<CodeSent> {
    const { store, clock, hasher, newId } = this.#d
    const phone = this.#smsNumber(input.phone, 'phone_number')
    const password = input.password === undefined ? undefined : parseNewPassword(input.password)
    return this.#reserveSend(phone, 'sms', caller, async (send) => {
      // Hashed for verified numbers too, so both paths take the same time.
      const passwordHash = password === undefined ? null : await hasher.hash(password)
      // The password stays with the sign-up challenge until its code is verified; the account row
      // gets it only then.
      const user = await store.savePendingUser(phone, clock.now(), newId())
      if (user.verifiedAt === null) {
        const to = { channel: 'sms' as const, phone }
        await send.code({
          purpose: 'register',
          challenge: numberChallenge(phone),
          to,
          passwordHash,
        })
        return
      }
      if (passwordHash !== null) {
        // A challenge no code can answer (codes are 6 digits; this is the empty code's MAC): it
        // remembers the password exactly as for a pending number, so a Login with it answers
        // the same for both (see #loginWithPassword).
        await this.#issue('register', numberChallenge(phone), '', passwordHash, caller)
      }
      await send.nothing()
    })
  }

  /**
   * verifyOtp checks a sign-up code and marks the number verified.
   * Throws INVALID_PHONE_NUMBER, INVALID_CODE_FORMAT, CLIENT_LOCKED_OUT, INVALID_CREDENTIALS.
   */
  async verifyOtp(input: { phone: string; code: string }, caller: Caller): Promise<void> {
    const { store, clock, newId } = this.#d
    const phone = this.#phones.parse(input.phone)
    const code = parseCode(input.code)
    await this.#withTry(caller, phone, async () => {
      const answer = await this.#answer('register', numberChallenge(phone), code)
      if (!answer.ok) return undefined
      // The code proves the phone, not who chose the password: anyone can Register a pending
      // number and have a code sent to its owner, who may then enter it. So the password given
      // with that Register is kept only when the code comes back from the same client; otherwise
      // the account is verified without a password (code logins still work).
      await store.verifyUser(
        phone,
        answer.requestedBy === caller.clientKey ? answer.passwordHash : null,
        clock.now(),
        newId(),
      )
      return true
    })
    await this.#endCooldown(phone)
  }

  /**
   * requestLoginCode sends a login code to a verified number; any other number gets the same
   * answer, in the same time, and no SMS.
   * Throws INVALID_PHONE_NUMBER, COUNTRY_NOT_ALLOWED, RESEND_TOO_SOON, NUMBER_SEND_LIMIT,
   * CLIENT_SEND_LIMIT, SMS_UNAVAILABLE, PHONE_NUMBER_UNDELIVERABLE.
   */
  async requestLoginCode(
    input: { phone: string; channel: 'sms' | 'email' },
    caller: Caller,
  ): Promise<CodeSent> {
    if (input.channel === 'email') {
      const phone = this.#phones.parse(input.phone)
      // Limited per number, not per address: a number with no address must be charged alike.
      return this.#reserveSend(`email-login:${phone}`, 'email', caller, async (send) => {
        const user = await this.#d.store.findUserByPhone(phone)
        if (user?.verifiedAt == null || user.email === null) {
          await send.nothing()
          return
        }
        const to = { channel: 'email' as const, address: user.email }
        await send.code({ purpose: 'login', challenge: numberChallenge(phone), to })
      })
    }
    const phone = this.#smsNumber(input.phone, 'phone_number')
    return this.#reserveSend(phone, 'sms', caller, async (send) => {
      const user = await this.#d.store.findUserByPhone(phone)
      if (user?.verifiedAt == null) await send.nothing()
      else {
        const to = { channel: 'sms' as const, phone }
        await send.code({ purpose: 'login', challenge: numberChallenge(phone), to })
      }
    })
  }

  /**
   * addEmail sends a code to an address, to add it to a privileged session's account.
   * Throws INVALID_EMAIL, INVALID_SESSION_TOKEN, SESSION_INVALID, REAUTHENTICATION_REQUIRED,
   * RESEND_TOO_SOON, NUMBER_SEND_LIMIT, CLIENT_SEND_LIMIT, EMAIL_UNAVAILABLE, EMAIL_UNDELIVERABLE.
   */
  async addEmail(input: { token: string; email: string }, caller: Caller): Promise<CodeSent> {
    const address = parseEmail(input.email)
    const { session } = await this.#privilegedSession(input.token)
    return this.#reserveSend(`email:${mailboxKey(address)}`, 'email', caller, (send) =>
      send.code({
        purpose: 'email_verify',
        challenge: accountChallenge(session.userId),
        to: { channel: 'email', address },
        target: address,
      }),
    )
  }

  /**
   * verifyEmail makes the address from the account's last AddEmail its email address, with the
   * code sent there. The address it replaces gets a notice. Returns the address.
   * Throws INVALID_CODE_FORMAT, INVALID_SESSION_TOKEN, SESSION_INVALID, CLIENT_LOCKED_OUT,
   * INVALID_CREDENTIALS.
   */
  async verifyEmail(input: { token: string; code: string }, caller: Caller): Promise<string> {
    const code = parseCode(input.code)
    const { session, tokenHash } = await this.#liveSession(input.token)
    const { address, previous } = await this.#withTry(caller, session.phone, async () => {
      const answer = await this.#answer('email_verify', accountChallenge(session.userId), code)
      if (!answer.ok || answer.target === null) return undefined
      const set = await this.#d.store.setEmail(tokenHash, this.#d.clock.now(), answer.target)
      if (set === undefined) throw new AuthError('SESSION_INVALID')
      return { address: answer.target, previous: set.previous }
    })
    await this.#endCooldown(`email:${mailboxKey(address)}`)
    if (previous !== null && mailboxKey(previous) !== mailboxKey(address)) {
      await this.#sendEmailNotice(previous)
    }
    return address
  }

  /**
   * login exchanges a verified number and a password or login code for a session.
   * Throws INVALID_PHONE_NUMBER, INVALID_PASSWORD, INVALID_CODE_FORMAT, MISSING_CREDENTIAL,
   * CLIENT_LOCKED_OUT, PASSWORD_LOGIN_DISABLED, INVALID_CREDENTIALS, PHONE_NOT_VERIFIED.
   */
  async login(
    input: { phone: string; credential: Credential | undefined },
    caller: Caller,
  ): Promise<Session> {
    const phone = this.#phones.parse(input.phone)
    const credential = input.credential
    if (credential === undefined) {
      throw new AuthError('MISSING_CREDENTIAL', {
        violation: { field: 'credential', description: 'one of password or code is required' },
      })
    }
    return credential.kind === 'password'
      ? this.#loginWithPassword(phone, parseLoginPassword(credential.value), caller)
      : this.#loginWithCode(phone, parseCode(credential.value), caller)
  }

  /** validateSession tells who owns a live session. Throws INVALID_SESSION_TOKEN, SESSION_INVALID. */
  async validateSession(input: { token: string }): Promise<SessionRecord> {
    return (await this.#liveSession(input.token)).session
  }

  /**
   * logout ends a session, or every session of its account; a token that names no live session,
   * malformed included, has nothing to end and succeeds too.
   */
  async logout(input: { token: string; allSessions: boolean }): Promise<void> {
    if (!isSessionToken(input.token)) return
    const tokenHash = hashSessionToken(input.token)
    if (input.allSessions) await this.#d.store.endAllSessions(tokenHash, this.#d.clock.now())
    else await this.#d.store.deleteSession(tokenHash)
  }

  /** listSessions lists the caller's account's live sessions. Throws INVALID_SESSION_TOKEN, SESSION_INVALID. */
  async listSessions(input: { token: string }): Promise<ListedSession[]> {
    const { session } = await this.#liveSession(input.token)
    const sessions = await this.#d.store.listSessions(
      session.userId,
      this.#d.clock.now(),
      SESSION_LIST_LIMIT,
    )
    return sessions.map((s) => ({ ...s, current: s.id === session.id }))
  }

  /**
   * revokeSession ends one session of the caller's account. An id that is unknown, ended or
   * another account's is the same SESSION_NOT_FOUND.
   * Throws INVALID_SESSION_ID, INVALID_SESSION_TOKEN, SESSION_INVALID, SESSION_NOT_FOUND.
   */
  async revokeSession(input: { token: string; sessionId: string }): Promise<void> {
    const sessionId = parseSessionId(input.sessionId)
    const { session } = await this.#liveSession(input.token)
    if (!(await this.#d.store.revokeSession(session.userId, sessionId, this.#d.clock.now()))) {
      throw new AuthError('SESSION_NOT_FOUND')
    }
  }

  /**
   * changePassword sets or replaces the password of a privileged session's account, ends the
   * account's other sessions and lifts the per-number failure cap.
   * Throws INVALID_PASSWORD, INVALID_SESSION_TOKEN, SESSION_INVALID, REAUTHENTICATION_REQUIRED.
   */
  async changePassword(input: { token: string; newPassword: string }): Promise<void> {
    const password = parseNewPassword(input.newPassword, 'new_password')
    const { tokenHash } = await this.#privilegedSession(input.token)
    const passwordHash = await this.#d.hasher.hash(password)
    if (!(await this.#d.store.changePassword(this.#proof(tokenHash), passwordHash))) {
      throw new AuthError('SESSION_INVALID')
    }
  }

  /**
   * requestPhoneChange sends a code to the new number of a privileged session's account. A number
   * that belongs to a verified account gets the same answer, in the same time, and no SMS.
   * Throws INVALID_PHONE_NUMBER, INVALID_SESSION_TOKEN, SESSION_INVALID, REAUTHENTICATION_REQUIRED,
   * RESEND_TOO_SOON, NUMBER_SEND_LIMIT, CLIENT_SEND_LIMIT, SMS_UNAVAILABLE, COUNTRY_NOT_ALLOWED,
   * PHONE_NUMBER_UNDELIVERABLE.
   */
  async requestPhoneChange(
    input: { token: string; newPhone: string },
    caller: Caller,
  ): Promise<CodeSent> {
    const phone = this.#smsNumber(input.newPhone, 'new_phone_number')
    const { session } = await this.#privilegedSession(input.token)
    const challenge = phoneChangeChallenge(session.userId, phone)
    return this.#reserveSend(phone, 'sms', caller, async (send) => {
      const holder = await this.#d.store.findUserByPhone(phone)
      if (holder?.verifiedAt == null) {
        await send.code({ purpose: 'phone_change', challenge, to: { channel: 'sms', phone } })
        return
      }
      // A challenge no code can answer replaces any earlier one, exactly as a real send would.
      await this.#issue('phone_change', challenge, '', null, caller)
      await send.nothing()
    })
  }

  /**
   * changePhoneNumber moves a privileged session's account to the new number with the code sent
   * to it, ends the account's other sessions and tells the old number. Returns the new number.
   * Throws INVALID_PHONE_NUMBER, INVALID_CODE_FORMAT, INVALID_SESSION_TOKEN, SESSION_INVALID,
   * REAUTHENTICATION_REQUIRED, CLIENT_LOCKED_OUT, INVALID_CREDENTIALS.
   */
  async changePhoneNumber(
    input: { token: string; newPhone: string; code: string },
    caller: Caller,
  ): Promise<string> {
    const phone = this.#phones.parse(input.newPhone, 'new_phone_number')
    const code = parseCode(input.code)
    const { session, tokenHash } = await this.#privilegedSession(input.token)
    const oldPhone = await this.#withTry(caller, phone, async () => {
      const answer = await this.#answer(
        'phone_change',
        phoneChangeChallenge(session.userId, phone),
        code,
      )
      if (!answer.ok) return undefined
      const change = await this.#d.store.changePhone(this.#proof(tokenHash), phone)
      if (change.changed) return change.oldPhone
      // Taken since the code was sent: the same answer as a wrong code.
      if (change.why === 'taken') return undefined
      throw new AuthError('SESSION_INVALID')
    })
    await this.#endCooldown(phone)
    await this.#sendNotice(oldPhone)
    return phone
  }

  /**
   * deleteAccount removes a privileged session's account with its sessions and pending codes.
   * Throws INVALID_SESSION_TOKEN, SESSION_INVALID, REAUTHENTICATION_REQUIRED.
   */
  async deleteAccount(input: { token: string }): Promise<void> {
    const { tokenHash } = await this.#privilegedSession(input.token)
    const user = await this.#d.store.deleteAccount(this.#proof(tokenHash))
    if (user === undefined) throw new AuthError('SESSION_INVALID')
    // On PostgreSQL the account's transaction already removed them; this finds none there.
    await this.#d.codes.discard([
      { purpose: 'register', subject: user.phone },
      { purpose: 'login', subject: user.phone },
      { purpose: 'phone_change', subject: user.id },
      { purpose: 'email_verify', subject: user.id },
    ])
  }

  /** #liveSession finds the token's live session. Throws INVALID_SESSION_TOKEN, SESSION_INVALID. */
  async #liveSession(raw: string): Promise<{ session: SessionRecord; tokenHash: Buffer }> {
    const tokenHash = hashSessionToken(parseSessionToken(raw))
    const session = await this.#d.store.findSession(tokenHash, this.#d.clock.now())
    if (session === undefined) throw new AuthError('SESSION_INVALID')
    return { session, tokenHash }
  }

  /**
   * #privilegedSession finds the token's live session and checks that its login is recent enough
   * for a sensitive change. The change itself re-checks both in its store step (see SessionProof).
   * Throws INVALID_SESSION_TOKEN, SESSION_INVALID, REAUTHENTICATION_REQUIRED.
   */
  async #privilegedSession(raw: string): Promise<{ session: SessionRecord; tokenHash: Buffer }> {
    const found = await this.#liveSession(raw)
    if (found.session.authenticatedAt <= this.#proof(found.tokenHash).authenticatedSince) {
      throw new AuthError('REAUTHENTICATION_REQUIRED')
    }
    return found
  }

  #proof(tokenHash: Buffer): SessionProof {
    const now = this.#d.clock.now()
    return { tokenHash, now, authenticatedSince: now - this.#d.policy.privilegedSessionMs }
  }

  /**
   * #endCooldown lets the next code to these send keys go at once, after a code was answered. A
   * convenience: if the store fails here the answer still stands (the code is used up), the
   * cooldown just runs its course.
   */
  async #endCooldown(...keys: string[]): Promise<void> {
    try {
      await this.#d.throttle.endCooldown(keys, this.#d.clock.now())
    } catch (err) {
      this.#d.log.warn({ err }, 'the resend cooldown could not be ended')
    }
  }

  /** #sendEmailNotice tells an address it no longer receives the account's codes; best effort. */
  async #sendEmailNotice(address: string): Promise<void> {
    const app = this.#d.messages.appName
    const text =
      `${app}: this address is no longer the email address of your account; another one ` +
      'replaced it. If this was not you, contact support now.'
    try {
      await this.#d.email.send({
        to: address,
        code: '',
        purpose: 'email_change_notice',
        subject: `${app}: your email address was changed`,
        text,
        html: `<p>${escapeHtml(text)}</p>`,
      })
    } catch (err) {
      this.#d.log.warn({ err }, 'email change notice to the previous address could not be sent')
    }
  }

  /** #sendNotice tells a number about a change to its account; a failure is logged, not thrown. */
  async #sendNotice(phone: string): Promise<void> {
    // Test numbers never reach a provider: they are often numbers nobody owns.
    if (this.#d.policy.testNumbers.has(phone)) return
    const text =
      `${this.#d.messages.appName}: the phone number of your account was changed to another ` +
      'number. If this was not you, contact support now.'
    try {
      await this.#d.sms.send({
        phone,
        code: '',
        purpose: 'phone_change_notice',
        text,
        validForSeconds: NOTICE_VALID_SECONDS,
      })
    } catch (err) {
      // The change is made and the new number proven; a lost notice must not undo or fail it.
      this.#d.log.warn({ err }, 'phone change notice to the old number could not be sent')
    }
  }

  async #loginWithPassword(phone: string, password: string, caller: Caller): Promise<Session> {
    const { store, hasher, policy, clock } = this.#d
    const attempt = await this.#d.lockout.begin(caller.clientKey, phone)
    let outcome: 'release' | 'fail' | 'succeed' = 'release'
    let user: User | undefined
    let pending = false
    try {
      // Counted before the hash is checked, like the client try, so that tries in flight from
      // many addresses cannot pass the per-number cap.
      if (!(await store.beginNumberTry(phone, clock.now(), policy.numberFailureLimit))) {
        throw new AuthError('PASSWORD_LOGIN_DISABLED')
      }
      outcome = 'fail'
      // The password this client gave with a live Register for this number, verified or not: the
      // same answer for both, so Register-then-Login cannot tell which numbers have accounts.
      // It counts as a failed login, so it can never reset the counts against the number.
      const pendingHash = await this.#d.codes.pendingPassword(phone, caller.clientKey, clock.now())
      pending = pendingHash !== undefined && (await hasher.verify(pendingHash, password))
      if (!pending) {
        user = await store.findUserByPhone(phone)
        const ok = await hasher.verify(
          user?.verifiedAt == null ? null : user.passwordHash,
          password,
        )
        if (ok) outcome = 'succeed'
      }
    } finally {
      if (outcome === 'fail') await attempt.fail()
      if (outcome === 'release') await attempt.release()
    }
    if (pending) throw new AuthError('PHONE_NOT_VERIFIED')
    if (outcome !== 'succeed' || user === undefined) throw new AuthError('INVALID_CREDENTIALS')
    await store.clearNumberFailures(phone)
    await attempt.succeed()
    return this.#startSession(user, caller)
  }

  async #loginWithCode(phone: string, code: string, caller: Caller): Promise<Session> {
    const { store, clock } = this.#d
    const user = await this.#withTry(caller, phone, async () => {
      const answer = await this.#answer('login', numberChallenge(phone), code)
      const found = answer.ok ? await store.findUserByPhone(phone) : undefined
      if (found?.verifiedAt == null) {
        await store.addNumberFailure(phone, clock.now())
        return undefined
      }
      await store.clearNumberFailures(phone)
      return found
    })
    const session = await this.#startSession(user, caller)
    // The login code is one whichever channel carried it: both channels' cooldowns end.
    await this.#endCooldown(phone, `email-login:${phone}`)
    return session
  }

  /**
   * withTry runs a credential check as one counted try: begun against the client lockout before
   * the check, a failure when check() finds nothing (INVALID_CREDENTIALS), given back when the
   * store fails (nothing was decided).
   */
  async #withTry<T>(
    caller: Caller,
    phone: string,
    check: () => Promise<T | undefined>,
  ): Promise<T> {
    const attempt = await this.#d.lockout.begin(caller.clientKey, phone)
    let result: T | undefined
    try {
      result = await check()
    } catch (error) {
      await attempt.release().catch(() => undefined)
      throw error
    }
    if (result === undefined) {
      await attempt.fail()
      throw new AuthError('INVALID_CREDENTIALS')
    }
    await attempt.succeed()
    return result
  }

  #answer(purpose: CodePurpose, challenge: ChallengeKey, code: string): Promise<AnswerResult> {
    const candidates = this.#d.codeHasher.candidates(purpose, challenge.boundTo, code)
    return this.#d.codes.answer(purpose, challenge.subject, candidates, this.#d.clock.now())
  }

  async #startSession(user: User, caller: Caller): Promise<Session> {
    const { store, clock, randomBytes, policy, newId } = this.#d
    const now = clock.now()
    const token = newSessionToken(randomBytes)
    const expiresAt = now + policy.sessionTtlMs
    await store.createSession({
      tokenHash: hashSessionToken(token),
      id: newId(),
      userId: user.id,
      clientKey: caller.clientKey,
      now,
      expiresAt,
    })
    return { token, userId: user.id, expiresAt }
  }

  /**
   * #smsNumber parses a number that a code may be sent to, and refuses it up front if its country
   * is not allowed (test numbers never reach a provider, so any country will do for them).
   * Throws INVALID_PHONE_NUMBER, COUNTRY_NOT_ALLOWED.
   */
  #smsNumber(raw: string, field: string): string {
    const phone = this.#phones.parse(raw, field)
    const allowed = this.#d.policy.allowedCountries
    if (allowed !== undefined && !this.#d.policy.testNumbers.has(phone)) {
      if (!allowed.has(this.#phones.region(phone))) {
        throw new AuthError('COUNTRY_NOT_ALLOWED', {
          violation: { field, description: `${field} is in a country codes are not sent to` },
        })
      }
    }
    return phone
  }

  /**
   * #reserveSend runs a send path under the send limits of `key` (the number, or an email key):
   * it reserves the send, answers from the key's delivery mark if it has one (alike for the send
   * and the no-send path), runs `work`, and gives the send back if nothing went out. Test numbers
   * skip the limits and the provider.
   */
  async #reserveSend(
    key: string,
    channel: Destination['channel'],
    caller: Caller,
    work: (send: SendTicket) => Promise<void>,
  ): Promise<CodeSent> {
    const { clock, throttle } = this.#d
    const testCode = channel === 'sms' ? this.#d.policy.testNumbers.get(key) : undefined
    if (testCode !== undefined) {
      await work({
        code: (order) =>
          this.#issue(
            order.purpose,
            order.challenge,
            testCode,
            order.passwordHash ?? null,
            caller,
            null,
          ),
        nothing: () => Promise.resolve(),
      })
      return this.#codeSent(clock.now())
    }
    // Budgets are charged on the no-send paths too, like the send limits: they reveal nothing.
    const budget = channel === 'sms' ? this.#phones.budgetKeys(key) : undefined
    const reservation = await throttle.reserve(key, caller.clientKey, clock.now(), budget)
    try {
      const mark = reservation.delivery
      if (mark.state === 'undeliverable') throw new AuthError(UNDELIVERABLE[channel])
      // No cause: the failure itself was logged once when it happened; repeating it for every
      // call until the mark ends would let anyone flood the error log.
      if (mark.state === 'failing') {
        throw new AuthError(UNAVAILABLE[channel], { retryAfterMs: mark.until - clock.now() })
      }
      await work({
        code: (order) => this.#sendCode(order, key, caller),
        nothing: () => this.#sendNothing(key, channel),
      })
      return this.#codeSent(reservation.resendAvailableAt)
    } catch (error) {
      await reservation.release()
      throw error
    }
  }

  /**
   * #sendNothing is the no-send path: it replays a recent real send, its time and, when the
   * provider refused it for now, its refusal (marking the key as the send path would).
   */
  async #sendNothing(key: string, channel: Destination['channel']): Promise<void> {
    const pacer = channel === 'sms' ? this.#d.pacer : this.#d.emailPacer
    const replayed = await pacer.pace()
    if (!replayed.refused) return
    const until = this.#d.clock.now() + replayed.retryAfterMs
    await this.#d.throttle.markDelivery(key, { state: 'failing', until })
    throw new AuthError(UNAVAILABLE[channel], { retryAfterMs: replayed.retryAfterMs })
  }

  /**
   * #sendCode sends a new code and keeps its challenge. An accepted send, or one whose outcome is
   * unknown (it may be on its way), keeps the challenge and the charge; a refused one marks the
   * send key so every path answers alike for a while, and charges nothing.
   */
  async #sendCode(order: CodeOrder, key: string, caller: Caller): Promise<void> {
    const { randomInt, policy, clock, throttle, log } = this.#d
    const { to, purpose } = order
    const code = generateCode(randomInt)
    const minutes = Math.round(policy.codeTtlMs / 60_000)
    const pacer = to.channel === 'sms' ? this.#d.pacer : this.#d.emailPacer
    // Timed on the monotonic clock: the injected clock is wall time (a step would skew the
    // samples) and stands still in tests (the pacer would learn 0 ms and never pace).
    const started = performance.now()
    try {
      if (to.channel === 'sms') {
        await this.#d.sms.send({
          phone: to.phone,
          code,
          purpose,
          text: this.#d.messages.code(purpose, code, minutes, 'sms'),
          validForSeconds: Math.round(policy.codeTtlMs / 1000),
        })
      } else {
        const text = this.#d.messages.code(purpose, code, minutes, 'email')
        await this.#d.email.send({
          to: to.address,
          code,
          purpose: purpose === 'login' ? 'login' : 'email_verify',
          subject: `${code} is your ${this.#d.messages.appName} code`,
          text,
          html: `<p>${escapeHtml(text).replace(code, `<strong>${code}</strong>`)}</p>`,
        })
      }
      pacer.observe(performance.now() - started)
    } catch (cause) {
      const kind = failureKind(cause)
      const elapsed = performance.now() - started
      const providerCode = cause instanceof SmsSendError ? cause.providerCode : undefined
      if (kind !== 'transient') pacer.observe(elapsed)
      if (kind === 'permanent') {
        log.info(
          { providerCode, channel: to.channel },
          'the provider says this destination cannot receive codes',
        )
        await throttle.markDelivery(key, {
          state: 'undeliverable',
          until: clock.now() + UNDELIVERABLE_MARK_MS,
        })
        throw new AuthError(UNDELIVERABLE[to.channel])
      }
      if (kind === 'transient') {
        const asked = cause instanceof SmsSendError ? (cause.retryAfterMs ?? 0) : 0
        const waitMs = Math.min(FAILING_MARK_MAX_MS, Math.max(FAILING_MARK_MS, asked))
        pacer.observe(elapsed, { refused: true, retryAfterMs: waitMs })
        await throttle.markDelivery(key, { state: 'failing', until: clock.now() + waitMs })
        throw new AuthError(UNAVAILABLE[to.channel], { cause, retryAfterMs: waitMs })
      }
      // Unknown: the provider may have taken it. It counts as a send and its code stays valid.
      log.warn(
        { err: cause, providerCode, channel: to.channel },
        'send outcome unknown; counted as sent',
      )
    }
    // Stored only once the code is (or may be) on its way: a refused send leaves the last code valid.
    await this.#issue(
      purpose,
      order.challenge,
      code,
      order.passwordHash ?? null,
      caller,
      order.target ?? null,
    )
  }

  #issue(
    purpose: CodePurpose,
    challenge: ChallengeKey,
    code: string,
    passwordHash: string | null,
    caller: Caller,
    target: string | null = null,
  ): Promise<void> {
    const { policy, clock } = this.#d
    return this.#d.codes.issue({
      purpose,
      subject: challenge.subject,
      codeHash: this.#d.codeHasher.hash(purpose, challenge.boundTo, code),
      expiresAt: clock.now() + policy.codeTtlMs,
      maxAttempts: policy.codeMaxAttempts,
      passwordHash,
      target,
      requestedBy: caller.clientKey,
    })
  }

  #codeSent(resendAvailableAt: number): CodeSent {
    return { codeExpiresAt: this.#d.clock.now() + this.#d.policy.codeTtlMs, resendAvailableAt }
  }
}

// A notice is still worth reading a day late (a phone that was off); a code is not.
const NOTICE_VALID_SECONDS = 86_400

/** Where a challenge is kept (subject) and what its code's MAC binds it to. */
interface ChallengeKey {
  subject: string
  boundTo: string
}

/** Codes an account asks for about itself (an email address): one per account. */
function accountChallenge(userId: string): ChallengeKey {
  return { subject: userId, boundTo: userId }
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
}

/** Sign-up and login codes: one per number. */
function numberChallenge(phone: string): ChallengeKey {
  return { subject: phone, boundTo: phone }
}

/**
 * Phone change codes: one per account (a new request replaces the last), and valid only for the
 * number it was sent to, so neither another account nor another number can use it.
 */
function phoneChangeChallenge(userId: string, newPhone: string): ChallengeKey {
  return { subject: userId, boundTo: `${userId}\0${newPhone}` }
}
