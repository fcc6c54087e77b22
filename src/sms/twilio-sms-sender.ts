import type { Logger } from 'pino'
import type { Clock } from '../auth/clock.js'
import { SmsSendError, type SmsMessage, type SmsSender } from '../auth/sms-sender.js'
import { ProviderClient, retryAfterMs, type ProviderAnswer } from './provider-client.js'

export interface TwilioSmsSenderOptions {
  /** https://api.twilio.com, or a fake in tests. */
  apiUrl: URL
  accountSid: string
  /** HTTP Basic credentials: the account SID and auth token, or an API key SID and secret. */
  username: string
  password: string
  sender: { from: string } | { messagingServiceSid: string }
  timeoutMs: number
  clock: Clock
  log: Logger
}

// Twilio's ValidityPeriod bounds, in seconds (error 21624/90007 outside them).
const MIN_VALIDITY_SECONDS = 1
const MAX_VALIDITY_SECONDS = 36_000

/**
 * Twilio error codes that mean this number cannot receive this message from this account: asking
 * again changes nothing, so they are permanent. https://www.twilio.com/docs/api/errors
 */
const UNDELIVERABLE: ReadonlyMap<number, string> = new Map([
  [21211, "the 'To' number is not a valid phone number"],
  [21265, "the 'To' number is a short code"],
  [21266, "the 'To' number is the sender's own number"],
  [21408, "sending to the 'To' number's region is not enabled on this account"],
  [21610, 'the recipient has opted out of messages from this sender (replied STOP)'],
  [21612, "the 'To' number cannot be reached from this sender"],
  [21614, "the 'To' number is not a mobile number"],
  [21635, "the 'To' number is a landline"],
])

/**
 * TwilioSmsSender sends each message through Twilio Programmable Messaging: one POST to the
 * Messages resource per message, never retried here. It rejects with an SmsSendError:
 * permanent for the codes in UNDELIVERABLE; transient for 429/20429, 5xx, 401/403, any other
 * refusal and a connection that fails before the request is out; unknown when the request went
 * out and no answer came. Its messages and causes never hold the credentials or the number.
 */
export class TwilioSmsSender implements SmsSender {
  readonly #options: TwilioSmsSenderOptions
  readonly #client: ProviderClient
  readonly #target: URL
  readonly #authorization: string

  constructor(options: TwilioSmsSenderOptions) {
    this.#options = options
    this.#client = new ProviderClient({
      name: 'Twilio',
      secure: options.apiUrl.protocol === 'https:',
      timeoutMs: options.timeoutMs,
    })
    // From the origin and path only: credentials in the URL would otherwise become a second
    // Authorization header.
    const base = options.apiUrl.origin + options.apiUrl.pathname.replace(/\/+$/, '')
    this.#target = new URL(
      `${base}/2010-04-01/Accounts/${encodeURIComponent(options.accountSid)}/Messages.json`,
    )
    this.#authorization = `Basic ${Buffer.from(`${options.username}:${options.password}`).toString('base64')}`
  }

  async send(message: SmsMessage): Promise<void> {
    const form = new URLSearchParams({
      To: message.phone,
      Body: message.text,
      // Twilio drops a message still queued after this long, so a code is never delivered expired.
      ValidityPeriod: String(
        Math.min(
          MAX_VALIDITY_SECONDS,
          Math.max(MIN_VALIDITY_SECONDS, Math.floor(message.validForSeconds)),
        ),
      ),
    })
    const { sender } = this.#options
    if ('from' in sender) form.set('From', sender.from)
    else form.set('MessagingServiceSid', sender.messagingServiceSid)

    const answer = await this.#client.post(
      this.#target,
      {
        authorization: this.#authorization,
        'content-type': 'application/x-www-form-urlencoded',
        accept: 'application/json',
      },
      form.toString(),
    )
    if (answer.status >= 200 && answer.status < 300) return
    throw this.#failure(answer)
  }

  #failure(answer: ProviderAnswer): SmsSendError {
    const { status } = answer
    const code = twilioCode(answer.body)
    const providerCode = String(code ?? status)
    const what = code === undefined ? `HTTP ${status}` : `HTTP ${status}, error ${code}`
    const retryAfter = retryAfterMs(answer, this.#options.clock)
    const details =
      retryAfter === undefined ? { providerCode } : { providerCode, retryAfterMs: retryAfter }

    const undeliverable = code === undefined ? undefined : UNDELIVERABLE.get(code)
    if (undeliverable !== undefined && status >= 400 && status < 500) {
      const message = `Twilio refused the number (${what}): ${undeliverable}`
      return new SmsSendError('permanent', message, { providerCode })
    }
    if (status === 401 || status === 403 || code === 20003) {
      // Transient, not permanent: bad or revoked credentials (or a suspended account) are this
      // service's configuration, not the number's fault. Callers get UNAVAILABLE and no number is
      // marked undeliverable; the operator gets an error line on every send until it is fixed.
      const message = `Twilio refused the credentials (${what}): check OTPAUTH_TWILIO_ACCOUNT_SID and OTPAUTH_TWILIO_AUTH_TOKEN (or _API_KEY_SID and _API_KEY_SECRET); no SMS can be sent until they are fixed`
      this.#options.log.error({ providerCode, status }, message)
      return new SmsSendError('transient', message, details)
    }
    if (status === 429 || code === 20429) {
      return new SmsSendError('transient', `Twilio is limiting the request rate (${what})`, details)
    }
    if (status >= 500) {
      return new SmsSendError('transient', `Twilio failed (${what})`, details)
    }
    // Anything else (an unexpected 4xx, a 3xx): a request or configuration problem of ours (a
    // From number Twilio does not know, a body too long…), so it may clear once fixed.
    return new SmsSendError('transient', `Twilio refused the request (${what})`, details)
  }
}

/** twilioCode reads `code` from a Twilio error body; undefined when the body is not one. */
function twilioCode(body: string): number | undefined {
  try {
    const parsed: unknown = JSON.parse(body)
    if (typeof parsed !== 'object' || parsed === null || !('code' in parsed)) return undefined
    const { code } = parsed
    return typeof code === 'number' && Number.isSafeInteger(code) ? code : undefined
  } catch {
    return undefined
  }
}
