import type { SmsMessage, SmsSender } from '../auth/sms-sender.js'
import type { OtpAuthMetrics } from './otpauth-metrics.js'
import { timedSend } from './timed-send.js'

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

  send(message: SmsMessage): Promise<void> {
    return timedSend(
      () => this.#inner.send(message),
      (outcome, seconds) => {
        this.#metrics.smsSent(message.purpose, outcome, seconds, this.#regionOf(message.phone))
      },
    )
  }
}
