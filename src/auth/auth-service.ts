import { AuthError } from './auth-error.js'
import type { AnswerResult, AuthStore, CodeStore, SendLimiter, User } from './auth-store.js'
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
import type { SendPacer } from './send-pacer.js'
import {
  hashSessionToken,
  newSessionToken,
  parseSessionToken,
  type RandomBytes,
} from './session-token.js'
import type { SmsSender } from './sms-sender.js'

export interface AuthPolicy {
  codeTtlMs: number
  /** Tries a code allows before it is burned. */
  codeMaxAttempts: number
  sessionTtlMs: number
  /** Consecutive failed logins per number before password login is refused (NIST: at most 100). */
  numberFailureLimit: number
}

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
  throttle: SendLimiter
  lockout: ClientLockout
  pacer: SendPacer
  policy: AuthPolicy
}

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

export interface SessionInfo {
  userId: string
  phone: string
  expiresAt: number
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
   * Throws INVALID_PHONE_NUMBER, INVALID_PASSWORD, RESEND_TOO_SOON, NUMBER_SEND_LIMIT,
   * CLIENT_SEND_LIMIT, SMS_UNAVAILABLE.
   */
  async register(
    input: { phone: string; password: string | undefined },
    caller: Caller,
  ): Promise<CodeSent> {
    const { store, clock, hasher, newId } = this.#d
    const phone = this.#phones.parse(input.phone)
    const password = input.password === undefined ? undefined : parseNewPassword(input.password)
    const reservation = await this.#d.throttle.reserve(phone, caller.clientKey, clock.now())
    try {
      // Hashed for verified numbers too, so both paths take the same time.
      const passwordHash = password === undefined ? null : await hasher.hash(password)
      // The password stays with the sign-up challenge until its code is verified; the account row
      // gets it only then.
      const user = await store.savePendingUser(phone, clock.now(), newId())
      if (user.verifiedAt !== null) {
        if (passwordHash !== null) {
          // A challenge no code can answer (codes are 6 digits; this is the empty code's MAC): it
          // remembers the password exactly as for a pending number, so a Login with it answers
          // the same for both (see #loginWithPassword).
          await this.#issue('register', phone, '', passwordHash, caller)
        }
        await this.#d.pacer.pace()
        return this.#codeSent(reservation.resendAvailableAt)
      }
      await this.#sendCode('register', phone, passwordHash, caller)
      return this.#codeSent(reservation.resendAvailableAt)
    } catch (error) {
      await reservation.release()
      throw error
    }
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
      const answer = await this.#answer('register', phone, code)
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
  }

  /**
   * requestLoginCode sends a login code to a verified number; any other number gets the same
   * answer, in the same time, and no SMS.
   * Throws INVALID_PHONE_NUMBER, RESEND_TOO_SOON, NUMBER_SEND_LIMIT, CLIENT_SEND_LIMIT,
   * SMS_UNAVAILABLE.
   */
  async requestLoginCode(input: { phone: string }, caller: Caller): Promise<CodeSent> {
    const phone = this.#phones.parse(input.phone)
    const reservation = await this.#d.throttle.reserve(phone, caller.clientKey, this.#d.clock.now())
    try {
      const user = await this.#d.store.findUserByPhone(phone)
      if (user?.verifiedAt == null) await this.#d.pacer.pace()
      else await this.#sendCode('login', phone, null, caller)
      return this.#codeSent(reservation.resendAvailableAt)
    } catch (error) {
      await reservation.release()
      throw error
    }
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
  async validateSession(input: { token: string }): Promise<SessionInfo> {
    const token = parseSessionToken(input.token)
    const session = await this.#d.store.findSession(hashSessionToken(token), this.#d.clock.now())
    if (session === undefined) throw new AuthError('SESSION_INVALID')
    return session
  }

  /** logout ends a session; ending an unknown or ended one succeeds too. Throws INVALID_SESSION_TOKEN. */
  async logout(input: { token: string }): Promise<void> {
    const token = parseSessionToken(input.token)
    await this.#d.store.deleteSession(hashSessionToken(token))
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
    return this.#startSession(user)
  }

  async #loginWithCode(phone: string, code: string, caller: Caller): Promise<Session> {
    const { store, clock } = this.#d
    const user = await this.#withTry(caller, phone, async () => {
      const answer = await this.#answer('login', phone, code)
      const found = answer.ok ? await store.findUserByPhone(phone) : undefined
      if (found?.verifiedAt == null) {
        await store.addNumberFailure(phone, clock.now())
        return undefined
      }
      await store.clearNumberFailures(phone)
      return found
    })
    return this.#startSession(user)
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

  #answer(purpose: CodePurpose, phone: string, code: string): Promise<AnswerResult> {
    const candidates = this.#d.codeHasher.candidates(purpose, phone, code)
    return this.#d.codes.answer(purpose, phone, candidates, this.#d.clock.now())
  }

  async #startSession(user: User): Promise<Session> {
    const { store, clock, randomBytes, policy } = this.#d
    const now = clock.now()
    const token = newSessionToken(randomBytes)
    const expiresAt = now + policy.sessionTtlMs
    await store.createSession(hashSessionToken(token), user.id, now, expiresAt)
    return { token, userId: user.id, expiresAt }
  }

  async #sendCode(
    purpose: CodePurpose,
    phone: string,
    passwordHash: string | null,
    caller: Caller,
  ): Promise<void> {
    const { sms, randomInt, pacer, policy } = this.#d
    const code = generateCode(randomInt)
    const minutes = Math.round(policy.codeTtlMs / 60_000)
    const text =
      purpose === 'register'
        ? `Your sign-up code is ${code}. It expires in ${minutes} minutes. Do not share it.`
        : `Your login code is ${code}. It expires in ${minutes} minutes. Do not share it.`
    // Timed on the monotonic clock: the injected clock is wall time (a step would poison the
    // average) and stands still in tests (the pacer would learn 0 ms and never pace).
    const started = performance.now()
    try {
      await sms.send({ phone, code, purpose, text })
    } catch (cause) {
      pacer.observe(performance.now() - started, false)
      throw new AuthError('SMS_UNAVAILABLE', { cause })
    }
    pacer.observe(performance.now() - started, true)
    // Stored only once the SMS is accepted: a failed send leaves the previous code valid.
    await this.#issue(purpose, phone, code, passwordHash, caller)
  }

  #issue(
    purpose: CodePurpose,
    phone: string,
    code: string,
    passwordHash: string | null,
    caller: Caller,
  ): Promise<void> {
    const { policy, clock } = this.#d
    return this.#d.codes.issue({
      purpose,
      phone,
      codeHash: this.#d.codeHasher.hash(purpose, phone, code),
      expiresAt: clock.now() + policy.codeTtlMs,
      maxAttempts: policy.codeMaxAttempts,
      passwordHash,
      requestedBy: caller.clientKey,
    })
  }

  #codeSent(resendAvailableAt: number): CodeSent {
    return { codeExpiresAt: this.#d.clock.now() + this.#d.policy.codeTtlMs, resendAvailableAt }
  }
}
