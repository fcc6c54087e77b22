import type { SmsMessage, SmsSender } from '../auth/sms-sender.js'

export interface WebhookSmsSenderOptions {
  url: URL
  timeoutMs: number
}

/**
 * WebhookSmsSender POSTs each message as JSON to an SMS gateway of the operator's choosing:
 * {"phone_number": "+E164", "code": "123456", "message": "…", "purpose": "register" | "login"}.
 * A non-2xx answer, a network error or the timeout rejects.
 */
export class WebhookSmsSender implements SmsSender {
  readonly #options: WebhookSmsSenderOptions

  constructor(options: WebhookSmsSenderOptions) {
    this.#options = options
  }

  async send(message: SmsMessage): Promise<void> {
    const response = await fetch(this.#options.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        phone_number: message.phone,
        code: message.code,
        message: message.text,
        purpose: message.purpose,
      }),
      signal: AbortSignal.timeout(this.#options.timeoutMs),
      redirect: 'error',
    })
    // Drain the body so the keep-alive connection can be reused.
    await response.arrayBuffer()
    if (!response.ok) {
      throw new Error(`SMS webhook answered HTTP ${response.status}`)
    }
  }
}
