/** User is an account: a phone number that signed up, verified or not yet. */
export interface User {
  readonly id: string
  /** E.164. */
  readonly phone: string
  readonly passwordHash: string | null
  /** Epoch ms when the number was verified; null while the account is pending. */
  readonly verifiedAt: number | null
}

export interface SessionRecord {
  readonly userId: string
  readonly phone: string
  readonly expiresAt: number
}

/**
 * AuthStore is what the rules need persisted. Every method is synchronous and atomic: the embedded
 * SQLite store runs each in one transaction on the calling thread, so a sequence of calls with no
 * await in between cannot interleave with another request.
 */
export interface AuthStore {
  findUserByPhone(phone: string): User | undefined
  /**
   * savePendingUser creates a pending account (no password until it is verified), or refreshes a
   * pending one. A verified account is left untouched. Returns the account as it now stands.
   */
  savePendingUser(phone: string, now: number, newId: string): User
  /** verifyUser marks a pending account verified with the given password hash. */
  verifyUser(phone: string, passwordHash: string | null, now: number, newId: string): User

  /** Client lockout: the end of the active lock, if any. */
  findLockout(clientKey: string, now: number): number | undefined
  lockClient(clientKey: string, until: number): void
  /** Failures (attempts in flight included) counted against the client since `since`. */
  countClientFailures(clientKey: string, since: number): number
  addClientFailure(clientKey: string, phone: string, now: number, since: number): void
  clearClientFailures(clientKey: string, phone?: string): void

  /** Per-number consecutive failed logins (NIST 800-63B's cap), for any number, known or not. */
  countNumberFailures(phone: string): number
  addNumberFailure(phone: string, now: number): void
  clearNumberFailures(phone: string): void

  createSession(tokenHash: Buffer, userId: string, now: number, expiresAt: number): void
  findSession(tokenHash: Buffer, now: number): SessionRecord | undefined
  deleteSession(tokenHash: Buffer): void

  /**
   * pruneExpired drops ended sessions, lifted lockouts, stale client failures, per-number failure
   * counts with no failure for `retention.numberFailuresMs`, and pending accounts not touched for
   * `retention.pendingMs`. Returns the number of rows deleted.
   */
  pruneExpired(
    now: number,
    retention: { clientFailuresMs: number; numberFailuresMs: number; pendingMs: number },
  ): number
}
