import { Readable } from 'node:stream'
import { createTransport, type Transporter } from 'nodemailer'
import type { SMTPPoolOptions, SMTPPoolSentMessageInfo } from 'nodemailer/lib/smtp-pool'
import type { EmailMessage, EmailSender } from '../auth/email-sender.js'
import { SmsSendError } from '../auth/sms-sender.js'

export interface SmtpEmailSenderOptions {
  /**
   * smtp://user:password@host:port (STARTTLS) or smtps://… (TLS from the first byte). The user
   * and password are percent-decoded; the password never appears in an error.
   */
  url: URL
  /** The From header: "App <no-reply@example.com>" or a bare address. */
  from: string
  /** Bound on one send, from the call to the server's answer, waiting for a free connection included. */
  timeoutMs: number
}

// Codes are sent one at a time, as users ask for them: a few warm connections absorb a burst, and
// most providers refuse more than about ten concurrent connections per account anyway.
const MAX_CONNECTIONS = 4
const MAX_MESSAGES_PER_CONNECTION = 100
// A pooled connection left unused this long is closed with QUIT, well before the 5 minutes after
// which an RFC 5321 server may drop it in the middle of a message.
const IDLE_CLOSE_MS = 30_000

/**
 * SmtpEmailSender sends through an SMTP server (a provider's relay, or a local catcher in
 * development) with a pool of connections. A send rejects with an SmsSendError:
 * - permanent: the server refused the recipient or the message (5xx to RCPT TO or DATA), or the
 *   address is not one mail can be sent to;
 * - transient: anything that leaves the message undelivered for now, when the message body
 *   never left: 4xx, no connection, DNS, TLS, refused credentials, a 5xx outside RCPT/DATA;
 * - unknown: the body went out and no answer came back (timeout, dropped connection).
 */
export class SmtpEmailSender implements EmailSender {
  readonly #transport: Transporter<SMTPPoolSentMessageInfo, SMTPPoolOptions>
  readonly #from: string
  readonly #timeoutMs: number
  readonly #secrets: string[]
  /** What each send in flight has got to, by the AbortSignal that also travels with its mail. */
  readonly #progress = new WeakMap<AbortSignal, { bodyStarted: boolean }>()
  readonly #inFlight = new Set<Promise<void>>()

  constructor(options: SmtpEmailSenderOptions) {
    const { url } = options
    const secure = url.protocol === 'smtps:'
    if (!secure && url.protocol !== 'smtp:') {
      throw new Error(`SMTP URL must be smtp:// or smtps://, got ${url.protocol}//`)
    }
    if ((url.pathname !== '' && url.pathname !== '/') || url.search !== '' || url.hash !== '') {
      // Better refused than silently ignored: options in the query (tls.*, pool…) are not read.
      throw new Error(`SMTP URL takes no path or query, got ${redactedUrl(url)}`)
    }
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1')
    let user: string
    let password: string
    try {
      user = decodeURIComponent(url.username)
      password = decodeURIComponent(url.password)
    } catch {
      throw new Error(
        `SMTP URL has a malformed %-escape in its user or password: ${redactedUrl(url)}`,
      )
    }
    this.#from = options.from
    this.#timeoutMs = options.timeoutMs
    this.#secrets = secretForms(user, password, url.password)
    this.#transport = createTransport({
      pool: true,
      maxConnections: MAX_CONNECTIONS,
      maxMessages: MAX_MESSAGES_PER_CONNECTION,
      idleTimeout: IDLE_CLOSE_MS,
      host,
      port: url.port === '' ? (secure ? 465 : 587) : Number(url.port),
      secure,
      // smtp:// must upgrade with STARTTLS, so a man in the middle cannot strip TLS and read the
      // password and the codes. Loopback is exempt: nobody sits in the middle there, and local
      // catchers (Mailpit, smtp-server in the tests) offer no TLS.
      requireTLS: !secure && !isLoopback(host),
      ...(user === '' && password === '' ? {} : { auth: { user, pass: password } }),
      connectionTimeout: options.timeoutMs,
      greetingTimeout: options.timeoutMs,
      dnsTimeout: options.timeoutMs,
      // The send deadline bounds a send; this only reaps a connection that went silent while idle.
      socketTimeout: IDLE_CLOSE_MS + options.timeoutMs,
      // nodemailer's own log would print the SMTP dialogue; failures reach the caller instead.
      logger: false,
      debug: false,
      disableFileAccess: true,
      disableUrlAccess: true,
    })
    // The pool reports every failure to the send it belongs to; an 'error' event with no
    // listener would end the process.
    this.#transport.on('error', () => undefined)
    this.#transport.use('stream', (mail, done) => {
      const signal = mail.data.signal
      const progress = signal === undefined ? undefined : this.#progress.get(signal)
      if (progress !== undefined) {
        mail.message.processFunc((input) =>
          onFirstRead(input, () => {
            progress.bodyStarted = true
          }),
        )
      }
      done()
    })
  }

  send(message: EmailMessage): Promise<void> {
    const sending = this.#send(message)
    this.#inFlight.add(sending)
    const forget = (): void => {
      this.#inFlight.delete(sending)
    }
    sending.then(forget, forget)
    return sending
  }

  async #send(message: EmailMessage): Promise<void> {
    if (!/^[^\s@<>,;:"()[\]\\]+@[^\s@<>,;:"()[\]\\]+$/.test(message.to)) {
      // Also what keeps "a@x, b@y" from becoming two recipients of one code.
      throw new SmsSendError('permanent', 'email address is not one SMTP can deliver to', {
        providerCode: 'invalid_address',
      })
    }
    // One deadline for the whole send, the wait for a free pooled connection included: no
    // per-phase timeout notices a server that trickles its replies, nor a queue that never moves.
    const signal = AbortSignal.timeout(this.#timeoutMs)
    const progress = { bodyStarted: false }
    this.#progress.set(signal, progress)
    try {
      await this.#transport.sendMail({
        from: this.#from,
        to: message.to,
        subject: message.subject,
        text: message.text,
        html: message.html,
        // RFC 3834: out-of-office and other auto-responders stay quiet.
        headers: { 'Auto-Submitted': 'auto-generated' },
        signal,
      })
    } catch (error) {
      throw this.#classify(error, progress.bodyStarted)
    }
  }

  /** close lets the sends in flight finish (each is bounded by timeoutMs), then closes the pool. */
  async close(): Promise<void> {
    this.#transport.close()
    await Promise.allSettled([...this.#inFlight])
  }

  #classify(error: unknown, bodyStarted: boolean): SmsSendError {
    const failure = smtpFailureOf(error)
    const reply = failure.responseCode
    const said = this.#redact(failure.response ?? failure.message)
    const at = failure.command === undefined ? '' : ` (${failure.command})`
    // The only abort is the send deadline.
    const timedOut = failure.code === 'EABORT'
    const providerCode =
      reply !== undefined
        ? String(reply)
        : timedOut
          ? 'ETIMEDOUT'
          : (failure.originalCode ?? failure.code ?? 'unknown')
    const what = timedOut ? `no answer within ${this.#timeoutMs} ms` : this.#redact(failure.message)

    if (failure.code === 'EAUTH' || failure.code === 'ENOAUTH') {
      // A configuration error (wrong user or password in OTPAUTH_SMTP_URL), not the address's
      // fault: transient, so the address is not marked undeliverable, and loud in the logs.
      return new SmsSendError(
        'transient',
        `SMTP server refused the credentials in the SMTP URL${at}: ${said}`,
        { providerCode },
      )
    }
    if (reply !== undefined && reply >= 500 && reply < 600) {
      // 503 is a command out of sequence, not a verdict on the message.
      if (reply !== 503 && (failure.command === 'RCPT TO' || failure.command === 'DATA')) {
        return new SmsSendError('permanent', `SMTP server refused the message${at}: ${said}`, {
          providerCode,
        })
      }
      // A 5xx to the greeting, EHLO, STARTTLS or MAIL FROM refuses this sender or this
      // connection (relaying denied for our From, TLS unsupported…): configuration, not the address.
      const hint =
        failure.command === 'STARTTLS'
          ? ' (smtp:// off loopback requires STARTTLS: use smtps://, or a server that offers it)'
          : ''
      return new SmsSendError('transient', `SMTP server refused the session${at}: ${said}${hint}`, {
        providerCode,
      })
    }
    if (reply !== undefined && reply >= 400 && reply < 500) {
      const retryAfterMs = retryAfterMsIn(failure.response ?? '')
      return new SmsSendError('transient', `SMTP server deferred the message${at}: ${said}`, {
        providerCode,
        ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
      })
    }
    if (bodyStarted) {
      // The server may have taken the message and failed to say so: it may still arrive.
      return new SmsSendError(
        'unknown',
        `SMTP server did not confirm the message after it was sent: ${what}`,
        { providerCode },
      )
    }
    return new SmsSendError('transient', `SMTP send failed before the message was sent: ${what}`, {
      providerCode,
    })
  }

  #redact(text: string): string {
    let out = text
    for (const secret of this.#secrets) out = out.split(secret).join('***')
    return out
  }
}

interface SmtpFailure {
  message: string
  code: string | undefined
  originalCode: string | undefined
  command: string | undefined
  response: string | undefined
  responseCode: number | undefined
}

/** smtpFailureOf reads the fields nodemailer sets on its errors, whatever was thrown. */
function smtpFailureOf(error: unknown): SmtpFailure {
  const fields: Record<string, unknown> =
    typeof error === 'object' && error !== null ? (error as Record<string, unknown>) : {}
  const text = (key: string): string | undefined =>
    typeof fields[key] === 'string' ? fields[key] : undefined
  const responseCode = fields['responseCode']
  return {
    message: error instanceof Error ? error.message : String(error),
    code: text('code'),
    originalCode: text('originalCode'),
    command: text('command'),
    response: text('response'),
    responseCode: typeof responseCode === 'number' ? responseCode : undefined,
  }
}

/** retryAfterMsIn reads a wait out of a 4xx reply ("try again in 5 minutes"), if it names one. */
function retryAfterMsIn(response: string): number | undefined {
  const match = /\b(?:in|after)\s+(\d{1,5})\s*(s|secs?|seconds?|m|mins?|minutes?|h|hours?)\b/i.exec(
    response,
  )
  if (match === null) return undefined
  const amount = Number(match[1])
  const unit = (match[2] ?? 's').toLowerCase()
  const unitMs = unit.startsWith('h') ? 3_600_000 : unit.startsWith('m') ? 60_000 : 1_000
  return amount * unitMs
}

/**
 * onFirstRead passes the message through and calls `started` when the connection first reads
 * it: nodemailer pipes the body only once the server has answered DATA with 354.
 */
function onFirstRead(input: Readable, started: () => void): Readable {
  let reading = false
  const output = new Readable({
    read() {
      if (reading) {
        input.resume()
        return
      }
      reading = true
      started()
      input.on('data', (chunk: Buffer) => {
        if (!output.push(chunk)) input.pause()
      })
      input.once('end', () => output.push(null))
      input.once('error', (error) => output.destroy(error))
    },
    destroy(error, callback) {
      input.destroy()
      callback(error)
    },
  })
  return output
}

/** secretForms is every spelling of the credentials that could end up in a server reply. */
function secretForms(user: string, password: string, asInUrl: string): string[] {
  if (password === '') return []
  const forms = [
    password,
    asInUrl,
    encodeURIComponent(password),
    Buffer.from(password).toString('base64'),
    // AUTH PLAIN sends base64("\0user\0password").
    Buffer.from(`\u0000${user}\u0000${password}`).toString('base64'),
  ]
  // Longest first, so a shorter form inside a longer one does not break the longer one's match.
  return [...new Set(forms)].sort((a, b) => b.length - a.length)
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host)
}

function redactedUrl(url: URL): string {
  const copy = new URL(url.href)
  if (copy.password !== '') copy.password = '***'
  return copy.href
}
