import { Metadata, status, type ServiceError } from '@grpc/grpc-js'
import { AuthError, type AuthErrorReason } from '../auth/auth-error.js'
import { BadRequest, ErrorInfo, RetryInfo } from '../../gen/google/rpc/error_details.js'
import { Status } from '../../gen/google/rpc/status.js'

export const ERROR_DOMAIN = 'otpauth'

// One message for every credential failure, so the answer never tells which part was wrong.
const INVALID_CREDENTIALS_MESSAGE = 'invalid phone number or credentials'

/** The one table from failure reason to gRPC status and developer-facing message. */
export const statusOf: Record<AuthErrorReason, { code: status; message: string }> = {
  INVALID_PHONE_NUMBER: { code: status.INVALID_ARGUMENT, message: 'invalid phone number' },
  INVALID_PASSWORD: { code: status.INVALID_ARGUMENT, message: 'invalid password' },
  INVALID_CODE_FORMAT: { code: status.INVALID_ARGUMENT, message: 'code must be 6 digits' },
  MISSING_CREDENTIAL: { code: status.INVALID_ARGUMENT, message: 'password or code is required' },
  // A backend forwards whatever token a client sent: "no good" is one status whatever the cause.
  INVALID_SESSION_TOKEN: {
    code: status.UNAUTHENTICATED,
    message: 'session token is malformed; log in again',
  },
  INVALID_SESSION_ID: { code: status.INVALID_ARGUMENT, message: 'malformed session id' },
  INVALID_CREDENTIALS: { code: status.UNAUTHENTICATED, message: INVALID_CREDENTIALS_MESSAGE },
  PHONE_NOT_VERIFIED: {
    code: status.FAILED_PRECONDITION,
    message: 'phone number is not verified; verify it with the code sent at registration',
  },
  PASSWORD_LOGIN_DISABLED: {
    code: status.FAILED_PRECONDITION,
    message: 'password login is disabled after too many failures; log in with a code',
  },
  CLIENT_LOCKED_OUT: {
    code: status.RESOURCE_EXHAUSTED,
    message: 'too many failed attempts from this address; try again later',
  },
  RESEND_TOO_SOON: {
    code: status.RESOURCE_EXHAUSTED,
    message: 'a code was sent to this number or address recently; wait before asking again',
  },
  NUMBER_SEND_LIMIT: {
    code: status.RESOURCE_EXHAUSTED,
    message: 'too many codes sent to this number or address; try again later',
  },
  CLIENT_SEND_LIMIT: {
    code: status.RESOURCE_EXHAUSTED,
    message: 'too many codes requested from this address; try again later',
  },
  SESSION_INVALID: {
    code: status.UNAUTHENTICATED,
    message: 'session is unknown, expired or ended',
  },
  SESSION_NOT_FOUND: {
    code: status.NOT_FOUND,
    message: 'no such session for this account',
  },
  REAUTHENTICATION_REQUIRED: {
    code: status.FAILED_PRECONDITION,
    message: 'this change needs a recent login; log in again and retry with the new session',
  },
  PHONE_NUMBER_UNDELIVERABLE: {
    code: status.FAILED_PRECONDITION,
    message: 'this number cannot receive SMS; use another number',
  },
  INVALID_EMAIL: { code: status.INVALID_ARGUMENT, message: 'invalid email address' },
  INVALID_CHANNEL: { code: status.INVALID_ARGUMENT, message: 'unknown channel' },
  EMAIL_UNDELIVERABLE: {
    code: status.FAILED_PRECONDITION,
    message: 'this email address cannot receive mail; use another address',
  },
  EMAIL_UNAVAILABLE: {
    code: status.UNAVAILABLE,
    message: 'the email could not be sent; try again shortly',
  },
  COUNTRY_NOT_ALLOWED: {
    code: status.INVALID_ARGUMENT,
    message: 'codes are not sent to numbers in this country',
  },
  SMS_UNAVAILABLE: {
    code: status.UNAVAILABLE,
    message: 'the SMS could not be sent; try again shortly',
  },
  SMS_BUDGET_EXHAUSTED: {
    code: status.RESOURCE_EXHAUSTED,
    message: 'the SMS budget for this destination is used up; try again later',
  },
  STORE_UNAVAILABLE: {
    code: status.UNAVAILABLE,
    message: 'the database is unreachable; try again shortly',
  },
  MALFORMED_REQUEST: {
    code: status.INVALID_ARGUMENT,
    message: 'the request is not a valid protobuf message for this method',
  },
}

const INTERNAL = { code: status.INTERNAL, message: 'internal error' }

/** An error as grpc-js sends it, with the google.rpc.Status in grpc-status-details-bin. */
export interface MappedError {
  error: Partial<ServiceError>
  /** The status name, for the log line. */
  statusName: string
  /** Set when the error is not a plain client mistake and its cause belongs in the log. */
  cause: unknown
}

/**
 * toServiceError maps any thrown value to a gRPC error with rich details: ErrorInfo always,
 * RetryInfo with a retry delay, BadRequest with a field violation. Anything that is not an
 * AuthError becomes INTERNAL with a generic message; its cause is only logged.
 */
export function toServiceError(thrown: unknown): MappedError {
  const authError = thrown instanceof AuthError ? thrown : undefined
  const reason = authError?.reason ?? 'INTERNAL'
  const { code, message } = authError === undefined ? INTERNAL : statusOf[authError.reason]

  const metadataEntries: Record<string, string> = { ...authError?.metadata }
  const details = []
  if (authError?.retryAfterMs !== undefined) {
    const ms = Math.max(0, Math.ceil(authError.retryAfterMs))
    metadataEntries['retryAfterSeconds'] = String(Math.ceil(ms / 1000))
    details.push(
      any(
        'google.rpc.RetryInfo',
        RetryInfo.encode({
          retryDelay: { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 },
        }).finish(),
      ),
    )
  }
  if (authError?.violation !== undefined) {
    details.push(
      any(
        'google.rpc.BadRequest',
        BadRequest.encode({ fieldViolations: [{ ...authError.violation, reason }] }).finish(),
      ),
    )
  }
  details.unshift(
    any(
      'google.rpc.ErrorInfo',
      ErrorInfo.encode({ reason, domain: ERROR_DOMAIN, metadata: metadataEntries }).finish(),
    ),
  )

  const metadata = new Metadata()
  metadata.set(
    'grpc-status-details-bin',
    Buffer.from(Status.encode({ code, message, details }).finish()),
  )
  const isClientMistake = authError !== undefined && authError.cause === undefined
  return {
    error: { code, details: message, metadata },
    statusName: status[code],
    cause: isClientMistake ? undefined : thrown,
  }
}

function any(type: string, value: Uint8Array): { typeUrl: string; value: Buffer } {
  return { typeUrl: `type.googleapis.com/${type}`, value: Buffer.from(value) }
}
