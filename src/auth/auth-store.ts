import type { CodePurpose } from './one-time-code.js'
import type { SmsBudgetKeys } from './sms-budget.js'

/** User is an account: a phone number that signed up, verified or not yet. */
export interface User {
  readonly id: string
  /** E.164. */
  readonly phone: string
  readonly passwordHash: string | null
  /** Epoch ms when the number was verified; null while the account is pending. */
  readonly verifiedAt: number | null
  /** The verified email address, a second channel for login codes; null: none. */
  readonly email: string | null
}

/** SessionRecord is a live session as the store has it. The token itself is never stored. */
export interface SessionRecord {
  /** Public id (UUID): what ListSessions shows and RevokeSession takes. */
  readonly id: string
  readonly userId: string
  /** The account's number now, E.164. */
  readonly phone: string
  readonly createdAt: number
  /** When the login behind this session happened: what makes a session privileged. */
  readonly authenticatedAt: number
  readonly expiresAt: number
  /** The client key of the Login that started it. */
  readonly clientKey: string
}

export interface NewSession {
  readonly tokenHash: Buffer
  readonly id: string
  readonly userId: string
  readonly clientKey: string
  /** Login time: the session's creation and authentication time. */
  readonly now: number
  readonly expiresAt: number
}

/**
 * SessionProof names the session a sensitive change rests on. The store makes the change only
 * while that session is live (`expires_at > now`) and privileged (`authenticated_at > since`),
 * checked in the same atomic step as the change, so a session ended a moment before cannot slip
 * a change through.
 */
export interface SessionProof {
  readonly tokenHash: Buffer
  readonly now: number
  /** Logins at or before this instant are too old for a sensitive change. */
  readonly authenticatedSince: number
}

/** The outcome of changePhone: moved, or why not. */
export type PhoneChange =
  { changed: true; oldPhone: string } | { changed: false; why: 'session' | 'taken' }

/** The client lockout's limits, passed to the store that counts against them. */
export interface LockoutLimits {
  /** Tries (failed or in flight) within `windowMs` that lock the client. */
  threshold: number
  /** Failures older than this are forgotten; a lock lasts this long. */
  windowMs: number
}

/** The answer to beginTry: the try is counted, or refused with the lock's end if there is one. */
export type TryAdmission = { admitted: true } | { admitted: false; lockedUntil: number | undefined }

/**
 * AuthStore is what the rules need persisted. Every method is one atomic operation on the store:
 * on SQLite one synchronous step, on PostgreSQL one statement (or one transaction that takes the
 * row lock first). Rules may await between two calls, so no rule relies on two calls in a row
 * seeing the same state. Failures of the store itself reject with AuthError STORE_UNAVAILABLE.
 */
export interface AuthStore {
  findUserByPhone(phone: string): Promise<User | undefined>
  /**
   * savePendingUser creates a pending account (no password until it is verified), or refreshes a
   * pending one. A verified account is left untouched. Returns the account as it now stands.
   */
  savePendingUser(phone: string, now: number, newId: string): Promise<User>
  /** verifyUser marks a pending account verified with the given password hash. */
  verifyUser(phone: string, passwordHash: string | null, now: number, newId: string): Promise<User>

  /**
   * beginTry counts a credential try by the client against the number before it is checked, unless
   * the client is locked or already has `threshold` tries (failed or in flight) in the window.
   */
  beginTry(
    clientKey: string,
    phone: string,
    now: number,
    limits: LockoutLimits,
  ): Promise<TryAdmission>
  /**
   * failTry confirms a begun try as a failure; when the client's count reaches the threshold it is
   * locked for `windowMs`. Returns the lock's end when this failure locked it.
   */
  failTry(
    clientKey: string,
    phone: string,
    now: number,
    limits: LockoutLimits,
  ): Promise<number | undefined>
  /** succeedTry ends a begun try as a success: the client's failures against this number are forgotten. */
  succeedTry(clientKey: string, phone: string, now: number, limits: LockoutLimits): Promise<void>
  /** releaseTry takes back a begun try that decided nothing (the check itself could not run). */
  releaseTry(clientKey: string, phone: string, now: number, limits: LockoutLimits): Promise<void>

  /**
   * beginNumberTry counts a password try against the number (NIST 800-63B's per-account cap),
   * unless it already has `limit` consecutive failures. Returns whether the try may go ahead.
   */
  beginNumberTry(phone: string, now: number, limit: number): Promise<boolean>
  addNumberFailure(phone: string, now: number): Promise<void>
  clearNumberFailures(phone: string): Promise<void>

  createSession(session: NewSession): Promise<void>
  findSession(tokenHash: Buffer, now: number): Promise<SessionRecord | undefined>
  /** listSessions is the account's live sessions, most recently authenticated first. */
  listSessions(userId: string, now: number, limit: number): Promise<SessionRecord[]>
  deleteSession(tokenHash: Buffer): Promise<void>
  /** revokeSession ends the account's live session with this public id; false if it has none. */
  revokeSession(userId: string, sessionId: string, now: number): Promise<boolean>
  /** endAllSessions ends every session of the account the token's live session belongs to. */
  endAllSessions(tokenHash: Buffer, now: number): Promise<void>

  /**
   * changePassword sets the account's password, ends its other sessions and clears the
   * number's failure count, in one step. False when the proof no longer holds (nothing changed).
   */
  changePassword(proof: SessionProof, passwordHash: string): Promise<boolean>
  /**
   * changePhone moves the account to `newPhone` and ends its other sessions, in one step. A
   * pending account on the new number is removed; a verified one makes it `taken`.
   */
  changePhone(proof: SessionProof, newPhone: string): Promise<PhoneChange>
  /**
   * deleteAccount removes the account with its sessions and per-number failure count (and, where
   * this store keeps codes, its codes), in one step. Undefined when the proof no longer holds.
   */
  deleteAccount(proof: SessionProof): Promise<User | undefined>
  /**
   * setEmail makes `email` the verified address of the account of a live session, in one step.
   * Undefined when the session is no longer live; else the address it replaced.
   */
  setEmail(
    tokenHash: Buffer,
    now: number,
    email: string,
  ): Promise<{ previous: string | null } | undefined>

  /**
   * pruneExpired drops ended sessions and codes, lifted lockouts, stale failures and send records,
   * per-number failure counts with no failure for `retention.numberFailuresMs`, and pending
   * accounts not touched for `retention.pendingMs`. Safe when several replicas run it at once.
   * Returns the number of rows deleted.
   */
  pruneExpired(
    now: number,
    retention: { clientFailuresMs: number; numberFailuresMs: number; pendingMs: number },
  ): Promise<number>
}

/** A challenge as stored: a code that was sent and may still be answered. The code is never kept. */
export interface NewChallenge {
  readonly purpose: CodePurpose
  /** What the challenge is for: the phone number; for a phone change, the account id. */
  readonly subject: string
  /** HMAC of the code under the current key. */
  readonly codeHash: Buffer
  readonly expiresAt: number
  readonly maxAttempts: number
  /** For sign-up: the argon2id hash given with the Register call that sent this code. */
  readonly passwordHash: string | null
  /** What the code proves when the answering call does not name it: the address for AddEmail. */
  readonly target: string | null
  /** The client key of the call that asked for this code. */
  readonly requestedBy: string
}

export type AnswerResult =
  | { ok: true; passwordHash: string | null; requestedBy: string; target: string | null }
  /** compared: a live challenge took the try (false: none was there to answer). */
  | { ok: false; compared: boolean }

/**
 * CodeStore keeps live challenges: in process memory for the embedded store, in PostgreSQL for
 * many replicas. answer() claims a try, compares and consumes in one atomic step, so guesses
 * spread over any number of calls (or replicas) never exceed the per-code limit and a code
 * yields at most one success.
 */
export interface CodeStore {
  /** issue stores a challenge, replacing any earlier one for the same purpose and subject. */
  issue(challenge: NewChallenge): Promise<void>
  /**
   * answer counts a try against the live challenge and compares the stored MAC with each of
   * `candidates` (the code's MAC under every accepted key). A right code is consumed; the last
   * allowed try burns the challenge, so after the limit even the right code fails.
   */
  answer(
    purpose: CodePurpose,
    subject: string,
    candidates: readonly Buffer[],
    now: number,
  ): Promise<AnswerResult>
  /**
   * pendingPassword is the password hash given with the live sign-up challenge for the number,
   * if that challenge was asked for by this client. Reading it counts no try.
   */
  pendingPassword(phone: string, clientKey: string, now: number): Promise<string | undefined>
  /** discard drops the live challenges of an account that is gone. */
  discard(challenges: readonly { purpose: CodePurpose; subject: string }[]): Promise<void>
  /** size is the number of challenges held in this process (for the metrics gauge), if any. */
  size(): number | undefined
}

/**
 * What real sends have said about a number lately, shared by every path for that number (a
 * send path and a no-send path answer alike while a mark lasts, so the marks reveal nothing).
 */
export type NumberDelivery =
  | { readonly state: 'ok' }
  /** The provider refused for now (transient): every path answers SMS_UNAVAILABLE until then. */
  | { readonly state: 'failing'; readonly until: number }
  /** The number can never receive SMS (permanent): every path says so until then. */
  | { readonly state: 'undeliverable'; readonly until: number }

/** A reserved send; release() gives it back when nothing was sent. */
export interface SendReservation {
  readonly resendAvailableAt: number
  /** The number's delivery mark, read in the same atomic step as the reservation. */
  readonly delivery: NumberDelivery
  release(): Promise<void>
}

/** The send limits, as configured. */
export interface SendLimits {
  cooldownMs: number
  perNumberPerHour: number
  perClientPerHour: number
}

/**
 * SendLimiter records sends against the per-number cooldown, the per-number hourly cap and the
 * per-client bucket and, for an SMS (given its budget keys), against the SMS budgets. reserve
 * checks them all and records the send only if all pass, atomically: concurrent sends for one
 * number (on any replica) let exactly one through the cooldown, and a refusal leaves nothing
 * charged. Throws RESEND_TOO_SOON, NUMBER_SEND_LIMIT, CLIENT_SEND_LIMIT or SMS_BUDGET_EXHAUSTED
 * with the time to wait.
 */
export interface SendLimiter {
  reserve(
    phone: string,
    clientKey: string,
    now: number,
    budget?: SmsBudgetKeys,
  ): Promise<SendReservation>
  /**
   * endCooldown ends the resend cooldown of each send key (a number, or an email key), in one
   * step: a code sent there was answered correctly, so the next code may go at once (and starts a
   * cooldown of its own). The hourly cap still counts every send.
   */
  endCooldown(keys: readonly string[], now: number): Promise<void>
  /**
   * markDelivery records a failed real send to the number, for every path to answer alike until
   * the mark ends. A mark ends by itself: a send can only succeed once no mark is live.
   */
  markDelivery(phone: string, mark: Exclude<NumberDelivery, { state: 'ok' }>): Promise<void>
}
