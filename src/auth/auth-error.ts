/**
 * The service's whole failure vocabulary. rpc/status.ts maps each reason to a gRPC status, so a
 * reason added here without a mapping does not compile.
 */
export type AuthErrorReason =
  | 'INVALID_PHONE_NUMBER'
  | 'INVALID_PASSWORD'
  | 'INVALID_CODE_FORMAT'
  | 'MISSING_CREDENTIAL'
  | 'INVALID_SESSION_TOKEN'
  | 'INVALID_CREDENTIALS'
  | 'PHONE_NOT_VERIFIED'
  | 'PASSWORD_LOGIN_DISABLED'
  | 'CLIENT_LOCKED_OUT'
  | 'RESEND_TOO_SOON'
  | 'NUMBER_SEND_LIMIT'
  | 'CLIENT_SEND_LIMIT'
  | 'SESSION_INVALID'
  | 'INVALID_SESSION_ID'
  | 'SESSION_NOT_FOUND'
  | 'REAUTHENTICATION_REQUIRED'
  | 'SMS_UNAVAILABLE'
  | 'SMS_BUDGET_EXHAUSTED'
  | 'PHONE_NUMBER_UNDELIVERABLE'
  | 'COUNTRY_NOT_ALLOWED'
  | 'INVALID_EMAIL'
  | 'INVALID_CHANNEL'
  | 'EMAIL_UNDELIVERABLE'
  | 'EMAIL_UNAVAILABLE'
  | 'MALFORMED_REQUEST'
  | 'STORE_UNAVAILABLE'

/** A request field that failed validation, named as in the API. */
export interface FieldViolation {
  field: string
  description: string
}

export interface AuthErrorDetails {
  /** How long until the same call can succeed, for rate limits and lockouts. */
  retryAfterMs?: number
  violation?: FieldViolation
  /** Facts for the caller, sent as ErrorInfo metadata (never anything about accounts). */
  metadata?: Readonly<Record<string, string>>
  cause?: unknown
}

export class AuthError extends Error {
  readonly reason: AuthErrorReason
  readonly retryAfterMs: number | undefined
  readonly violation: FieldViolation | undefined
  readonly metadata: Readonly<Record<string, string>> | undefined

  constructor(reason: AuthErrorReason, details: AuthErrorDetails = {}) {
    super(reason, details.cause === undefined ? undefined : { cause: details.cause })
    this.name = 'AuthError'
    this.reason = reason
    this.retryAfterMs = details.retryAfterMs
    this.violation = details.violation
    this.metadata = details.metadata
  }
}

/** invalidField builds the INVALID_ARGUMENT-class error for one request field. */
export function invalidField(
  reason: AuthErrorReason,
  field: string,
  description: string,
): AuthError {
  return new AuthError(reason, { violation: { field, description } })
}
