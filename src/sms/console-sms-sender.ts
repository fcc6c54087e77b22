import type { Logger } from 'pino'
import type { SmsMessage, SmsSender } from '../auth/sms-sender.js'

/**
 * ConsoleSmsSender writes each message, code included, to the log. For development only: it is
 * the one place a code is ever logged, and start-up warns when it is in use.
 */
export class ConsoleSmsSender implements SmsSender {
  readonly #log: Logger

  constructor(log: Logger) {
    this.#log = log
  }

  send(message: SmsMessage): Promise<void> {
    this.#log.info(
      { sms: { to: message.phone, purpose: message.purpose, text: message.text } },
      'console SMS (development sender: codes are in this log)',
    )
    return Promise.resolve()
  }
}
