import { createHmac } from 'node:crypto'
import type { OutgoingHttpHeaders } from 'node:http'
import type { Clock } from '../auth/clock.js'
import { SmsSendError, type SmsMessage, type SmsSender } from '../auth/sms-sender.js'
import { ProviderClient, retryAfterMs } from './provider-client.js'

export interface WebhookSmsSenderOptions {
  url: URL
  timeoutMs: number
  /** Standard Webhooks signing key (the bytes after `whsec_`); undefined: requests are unsigned. */
  secret?: Buffer | undefined
  /** Stamps webhook-timestamp and reads Retry-After dates: wall time, as receivers check it. */
  clock: Clock
  /** A new webhook-id per message: `msg_` and characters other than `.` (Standard Webhooks). */
  newMessageId: () => string
}

/**
 * WebhookSmsSender POSTs each message as JSON to an SMS gateway of the operator's choosing:
 * {"phone_number": "+E164", "code": "123456", "message": "…", "purpose": "register" | "login" |
 * "phone_change"}; a notice ("purpose": "phone_change_notice") has no "code". With a secret, each
 * POST is signed as Standard Webhooks says (webhook-id, webhook-timestamp, webhook-signature).
 * One attempt per message, never retried here. Rejects with an SmsSendError: permanent on 422 (the
 * gateway's way to say the number can never receive SMS); transient on any other non-2xx answer
 * (with Retry-After) or a connection that fails before the request is out; unknown when the
 * request went out and no answer came (docs/sms-providers.md).
 */
export class WebhookSmsSender implements SmsSender {
  readonly #options: WebhookSmsSenderOptions
  readonly #client: ProviderClient

  constructor(options: WebhookSmsSenderOptions) {
    this.#options = options
    this.#client = new ProviderClient({
      name: 'SMS webhook',
      secure: options.url.protocol === 'https:',
      timeoutMs: options.timeoutMs,
    })
  }

  async send(message: SmsMessage): Promise<void> {
    const body = JSON.stringify({
      phone_number: message.phone,
      code: message.code === '' ? undefined : message.code,
      message: message.text,
      purpose: message.purpose,
    })
    const headers: OutgoingHttpHeaders = { 'content-type': 'application/json' }
    const { secret, clock, newMessageId } = this.#options
    if (secret !== undefined) {
      const id = newMessageId()
      const timestamp = Math.floor(clock.now() / 1000).toString()
      const signature = createHmac('sha256', secret)
        .update(`${id}.${timestamp}.${body}`)
        .digest('base64')
      headers['webhook-id'] = id
      headers['webhook-timestamp'] = timestamp
      headers['webhook-signature'] = `v1,${signature}`
    }

    // Redirects are not followed: a 3xx is a refusal like any other.
    const answer = await this.#client.post(this.#options.url, headers, body)
    const { status } = answer
    if (status >= 200 && status < 300) return
    const providerCode = String(status)
    if (status === 422) {
      throw new SmsSendError(
        'permanent',
        'SMS webhook answered HTTP 422: the number cannot receive SMS',
        { providerCode },
      )
    }
    const retryAfter = retryAfterMs(answer, clock)
    throw new SmsSendError(
      'transient',
      `SMS webhook answered HTTP ${status}`,
      retryAfter === undefined ? { providerCode } : { providerCode, retryAfterMs: retryAfter },
    )
  }
}
