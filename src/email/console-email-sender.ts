import type { Logger } from 'pino'
import type { EmailMessage, EmailSender } from '../auth/email-sender.js'

/**
 * ConsoleEmailSender writes each email, code included, to the log instead of sending it. For
 * development only: it is the one place an email code is ever logged, and it warns once when
 * it is built.
 */
export class ConsoleEmailSender implements EmailSender {
  readonly #log: Logger

  constructor(log: Logger) {
    this.#log = log
    this.#log.warn(
      'OTPAUTH_EMAIL=console: email codes are written to this log instead of being sent. ' +
        'For development only; set OTPAUTH_EMAIL=smtp in production.',
    )
  }

  send(message: EmailMessage): Promise<void> {
    // The text only: the HTML body says the same, and the code is under no key the logger redacts.
    this.#log.info(
      {
        email: {
          to: message.to,
          purpose: message.purpose,
          subject: message.subject,
          text: message.text,
        },
      },
      'console email (development sender: codes are in this log)',
    )
    return Promise.resolve()
  }

  close(): Promise<void> {
    return Promise.resolve()
  }
}
