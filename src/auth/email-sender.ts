/** What an email is for: a code, or a notice that carries none. */
export type EmailPurpose = 'email_verify' | 'login' | 'email_change_notice'

/** EmailMessage is one code (or notice) on its way to an address. */
export interface EmailMessage {
  /** The address, as verified (lower-cased domain). */
  to: string
  /** The code; '' for a notice. It is in the subject too, so mail clients show it at once. */
  code: string
  purpose: EmailPurpose
  subject: string
  text: string
  html: string
}

/**
 * EmailSender delivers codes and notices by email. Resolves when the mail server accepted the
 * message; rejects with an SmsSendError (sms-sender.ts: the same permanent / transient / unknown
 * classification), and anything else counts as transient.
 */
export interface EmailSender {
  send(message: EmailMessage): Promise<void>
  /** close ends pooled connections at shutdown. */
  close(): Promise<void>
}
