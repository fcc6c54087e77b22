import http from 'node:http'
import https from 'node:https'
import type { SmsMessage, SmsSender } from '../auth/sms-sender.js'

export interface WebhookSmsSenderOptions {
  url: URL
  timeoutMs: number
}

/**
 * WebhookSmsSender POSTs each message as JSON to an SMS gateway of the operator's choosing:
 * {"phone_number": "+E164", "code": "123456", "message": "…", "purpose": "register" | "login" |
 * "phone_change"}; a notice ("purpose": "phone_change_notice") has no "code".
 * A non-2xx answer, a network error or the timeout rejects.
 */
export class WebhookSmsSender implements SmsSender {
  readonly #options: WebhookSmsSenderOptions
  // node:http with a keep-alive agent rather than fetch: fetch costs about 0.4 ms of CPU per
  // POST, which was most of a Register call's CPU (see bench/README-performance.md).
  readonly #agent: http.Agent
  readonly #request: typeof http.request

  constructor(options: WebhookSmsSenderOptions) {
    this.#options = options
    const secure = options.url.protocol === 'https:'
    this.#agent = secure
      ? new https.Agent({ keepAlive: true })
      : new http.Agent({ keepAlive: true })
    this.#request = secure ? https.request : http.request
  }

  send(message: SmsMessage): Promise<void> {
    const body = JSON.stringify({
      phone_number: message.phone,
      code: message.code === '' ? undefined : message.code,
      message: message.text,
      purpose: message.purpose,
    })
    return new Promise((resolve, reject) => {
      const request = this.#request(
        this.#options.url,
        {
          method: 'POST',
          agent: this.#agent,
          headers: {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
          },
        },
        (response) => {
          // Drain the body so the keep-alive connection can be reused. Redirects are not followed.
          response.resume()
          response.on('error', fail)
          response.on('close', () => {
            if (!response.complete) fail(new Error('SMS webhook closed the connection mid-answer'))
          })
          response.on('end', () => {
            clearTimeout(timer)
            const code = response.statusCode ?? 0
            if (code >= 200 && code < 300) resolve()
            else reject(new Error(`SMS webhook answered HTTP ${code}`))
          })
        },
      )
      function fail(error: Error): void {
        clearTimeout(timer)
        reject(error)
      }
      const timer = setTimeout(() => {
        request.destroy(new Error(`SMS webhook timed out after ${this.#options.timeoutMs} ms`))
      }, this.#options.timeoutMs)
      request.on('error', fail)
      request.end(body)
    })
  }
}
