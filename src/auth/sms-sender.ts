import type { CodePurpose } from './one-time-code.js'

/** What an SMS is for: a code, or a notice that carries none. */
export type SmsPurpose = CodePurpose | 'phone_change_notice'

/** SmsMessage is one code (or notice) on its way to a phone. */
export interface SmsMessage {
  /** E.164. */
  phone: string
  /** The code in the text; '' for a notice. */
  code: string
  purpose: SmsPurpose
  /** The text the user reads. */
  text: string
  /** How long the code stays valid: a provider may drop the message after that (Twilio ValidityPeriod). */
  validForSeconds: number
}

/**
 * How a send failed, which decides what the rules do with it:
 * - permanent: the number cannot receive this message (invalid, landline, opted out). No retry;
 *   the number is remembered as undeliverable for a while.
 * - transient: the provider refused for now (rate limit, 5xx, connection refused) and did not
 *   take the message. Nothing is charged; the caller may retry after `retryAfterMs`.
 * - unknown: the request went out and no answer came (timeout, dropped connection). The message
 *   may be on its way, so it counts as a send.
 */
export type SmsFailureKind = 'permanent' | 'transient' | 'unknown'

/** SmsSendError is how a sender reports a failed send. Its message never holds credentials. */
export class SmsSendError extends Error {
  readonly kind: SmsFailureKind
  readonly retryAfterMs: number | undefined
  /** The provider's own error code, for logs and metrics (Twilio's 21211, an HTTP status…). */
  readonly providerCode: string | undefined

  constructor(
    kind: SmsFailureKind,
    message: string,
    details: { cause?: unknown; retryAfterMs?: number; providerCode?: string } = {},
  ) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause })
    this.name = 'SmsSendError'
    this.kind = kind
    this.retryAfterMs = details.retryAfterMs
    this.providerCode = details.providerCode
  }
}

/** failureKind classifies anything a sender threw: only an SmsSendError says more than transient. */
export function failureKind(error: unknown): SmsFailureKind {
  return error instanceof SmsSendError ? error.kind : 'transient'
}

/**
 * SmsSender delivers codes and notices. Resolves when the provider accepted the message; rejects
 * with an SmsSendError (anything else counts as transient).
 */
export interface SmsSender {
  send(message: SmsMessage): Promise<void>
}
