import type { EmailMessage, EmailSender } from '../auth/email-sender.js'
import type { OtpAuthMetrics } from './otpauth-metrics.js'
import { timedSend } from './timed-send.js'

/** MeteredEmailSender counts every email handed to the real sender, by purpose and outcome. */
export class MeteredEmailSender implements EmailSender {
  readonly #inner: EmailSender
  readonly #metrics: OtpAuthMetrics

  constructor(inner: EmailSender, metrics: OtpAuthMetrics) {
    this.#inner = inner
    this.#metrics = metrics
  }

  send(message: EmailMessage): Promise<void> {
    return timedSend(
      () => this.#inner.send(message),
      (outcome, seconds) => {
        this.#metrics.emailSent(message.purpose, outcome, seconds)
      },
    )
  }

  close(): Promise<void> {
    return this.#inner.close()
  }
}
