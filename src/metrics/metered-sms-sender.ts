import type { SmsMessage, SmsSender } from '../auth/sms-sender.js'
import type { OtpAuthMetrics } from './otpauth-metrics.js'

/** MeteredSmsSender counts every code handed to the real sender, with its latency and outcome. */
export class MeteredSmsSender implements SmsSender {
  readonly #inner: SmsSender
  readonly #metrics: OtpAuthMetrics

  constructor(inner: SmsSender, metrics: OtpAuthMetrics) {
    this.#inner = inner
    this.#metrics = metrics
  }

  async send(message: SmsMessage): Promise<void> {
    const started = performance.now()
    let ok = false
    try {
      await this.#inner.send(message)
      ok = true
    } finally {
      this.#metrics.smsSent(message.purpose, ok, (performance.now() - started) / 1000)
    }
  }
}
