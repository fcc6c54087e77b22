import { failureKind, type SmsMessage, type SmsSender } from '../auth/sms-sender.js'
import type { OtpAuthMetrics } from './otpauth-metrics.js'

/** MeteredSmsSender counts every code handed to the real sender, with its latency and outcome. */
export class MeteredSmsSender implements SmsSender {
  readonly #inner: SmsSender
  readonly #metrics: OtpAuthMetrics

  readonly #regionOf: (phone: string) => string

  constructor(inner: SmsSender, metrics: OtpAuthMetrics, regionOf: (phone: string) => string) {
    this.#inner = inner
    this.#metrics = metrics
    this.#regionOf = regionOf
  }

  async send(message: SmsMessage): Promise<void> {
    const started = performance.now()
    let result: 'sent' | 'permanent' | 'transient' | 'unknown' = 'sent'
    try {
      await this.#inner.send(message)
    } catch (error) {
      result = failureKind(error)
      throw error
    } finally {
      const seconds = (performance.now() - started) / 1000
      this.#metrics.smsSent(message.purpose, result, seconds, this.#regionOf(message.phone))
    }
  }
}
