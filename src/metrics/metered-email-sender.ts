import type { EmailMessage, EmailSender } from '../auth/email-sender.js'
import { failureKind } from '../auth/sms-sender.js'
import type { OtpAuthMetrics } from './otpauth-metrics.js'

/** MeteredEmailSender counts every email handed to the real sender, by purpose and outcome. */
export class MeteredEmailSender implements EmailSender {
  readonly #inner: EmailSender
  readonly #metrics: OtpAuthMetrics

  constructor(inner: EmailSender, metrics: OtpAuthMetrics) {
    this.#inner = inner
    this.#metrics = metrics
  }

  async send(message: EmailMessage): Promise<void> {
    const started = performance.now()
    let result: 'sent' | 'permanent' | 'transient' | 'unknown' = 'sent'
    try {
      await this.#inner.send(message)
    } catch (error) {
      result = failureKind(error)
      throw error
    } finally {
      this.#metrics.emailSent(message.purpose, result, (performance.now() - started) / 1000)
    }
  }

  close(): Promise<void> {
    return this.#inner.close()
  }
}
