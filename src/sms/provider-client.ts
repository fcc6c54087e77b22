import http, { type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http'
import https from 'node:https'
import type { Clock } from '../auth/clock.js'
import { SmsSendError } from '../auth/sms-sender.js'

/** An SMS provider's answer to one POST. */
export interface ProviderAnswer {
  status: number
  headers: IncomingHttpHeaders
  /**
   * The body as far as it came (at most MAX_BODY_BYTES); always '' for a 2xx, which is settled by
   * its status line alone.
   */
  body: string
}

export interface ProviderClientOptions {
  /** How messages name the peer: "Twilio", "the SMS webhook". */
  name: string
  secure: boolean
  timeoutMs: number
}

// Error bodies are a few hundred bytes; more is kept out of memory (and out of logs).
const MAX_BODY_BYTES = 16 * 1024
// Idle keep-alive connections are closed before the peer is likely to close them (the agent also
// honours a shorter `Keep-Alive: timeout=` hint): a request written to a connection the peer is
// closing at that moment fails after it was written, which is an unknown outcome.
const IDLE_SOCKET_MS = 30_000
// A Retry-After beyond this is a broken peer, not advice worth passing on to callers.
const MAX_RETRY_AFTER_MS = 3_600_000

/**
 * ProviderClient POSTs to one SMS provider over node:http(s) with a keep-alive agent, one attempt
 * per call. It resolves with any HTTP answer and rejects only when none came, with an
 * SmsSendError that says whether the provider can have the message:
 * - transient: the connection failed, or the deadline passed, before the whole request was handed
 *   to the network (refused, DNS, TLS): the provider cannot have acted on it;
 * - unknown: the request was written and then the deadline passed or the connection dropped
 *   before an answer: the provider may have taken it.
 */
export class ProviderClient {
  readonly #options: ProviderClientOptions
  // node:http with a keep-alive agent rather than fetch: fetch costs about 0.4 ms of CPU per
  // POST, which was most of a Register call's CPU (see bench/README-performance.md).
  readonly #agent: http.Agent
  readonly #request: typeof http.request

  constructor(options: ProviderClientOptions) {
    this.#options = options
    const agentOptions = { keepAlive: true, timeout: IDLE_SOCKET_MS }
    this.#agent = options.secure ? new https.Agent(agentOptions) : new http.Agent(agentOptions)
    this.#request = options.secure ? https.request : http.request
  }

  /** post sends one request; see the class comment for how it settles. */
  post(target: URL, headers: OutgoingHttpHeaders, body: string): Promise<ProviderAnswer> {
    const { name, timeoutMs } = this.#options
    return new Promise((resolve, reject) => {
      let settled = false
      let written = false
      let timedOut = false
      let answered: { status: number; headers: IncomingHttpHeaders; chunks: Buffer[] } | undefined
      const settle = (outcome: () => void): void => {
        if (settled) return
        settled = true
        outcome()
      }
      const resolveAnswered = (): void => {
        clearTimeout(timer)
        if (answered === undefined) return
        const { status, headers: answerHeaders, chunks } = answered
        settle(() => {
          resolve({ status, headers: answerHeaders, body: Buffer.concat(chunks).toString('utf8') })
        })
      }

      const request = this.#request(
        target,
        {
          method: 'POST',
          agent: this.#agent,
          headers: { ...headers, 'content-length': Buffer.byteLength(body) },
        },
        (response) => {
          const status = response.statusCode ?? 0
          answered = { status, headers: response.headers, chunks: [] }
          if (status >= 200 && status < 300) {
            // The status line settles it; the body is drained so the connection can be reused.
            settle(() => {
              resolve({ status, headers: response.headers, body: '' })
            })
            response.resume()
          } else {
            let kept = 0
            response.on('data', (chunk: Buffer) => {
              if (kept >= MAX_BODY_BYTES || answered === undefined) return
              const part = chunk.subarray(0, MAX_BODY_BYTES - kept)
              answered.chunks.push(part)
              kept += part.length
            })
          }
          // An answer cut short (or stalled until the deadline) still answered: the status stands.
          response.on('error', () => undefined)
          response.on('end', resolveAnswered)
          response.on('close', resolveAnswered)
        },
      )
      const timer = setTimeout(() => {
        timedOut = true
        request.destroy(new Error(`no answer within ${timeoutMs} ms`))
      }, timeoutMs)
      // 'finish': the whole request is handed to the operating system for sending.
      request.on('finish', () => {
        written = true
      })
      request.on('error', (error: Error & { code?: string }) => {
        if (answered !== undefined) {
          resolveAnswered()
          return
        }
        clearTimeout(timer)
        const failure = timedOut ? `nothing within ${timeoutMs} ms` : (error.code ?? error.message)
        settle(() => {
          reject(
            written
              ? new SmsSendError(
                  'unknown',
                  `${name}: no answer to a request already sent (${failure}); the message may have gone out`,
                  { cause: error },
                )
              : new SmsSendError('transient', `${name} could not be reached (${failure})`, {
                  cause: error,
                }),
          )
        })
      })
      request.end(body)
    })
  }
}

/**
 * retryAfterMs reads Retry-After (delay-seconds or an HTTP date, the latter against the answer's
 * own Date header when it has one, else the clock). Undefined when absent or unreadable.
 */
export function retryAfterMs(answer: ProviderAnswer, clock: Clock): number | undefined {
  const raw = answer.headers['retry-after']?.trim()
  if (raw === undefined || raw === '') return undefined
  let ms: number
  if (/^\d+$/.test(raw)) ms = Number(raw) * 1000
  else {
    const at = Date.parse(raw)
    if (Number.isNaN(at)) return undefined
    const sent = answer.headers.date === undefined ? Number.NaN : Date.parse(answer.headers.date)
    ms = at - (Number.isNaN(sent) ? clock.now() : sent)
  }
  return Math.min(Math.max(0, ms), MAX_RETRY_AFTER_MS)
}
