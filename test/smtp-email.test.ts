import { createServer as createNetServer, type AddressInfo } from 'node:net'
import { describe, expect, it, onTestFinished } from 'vitest'
import type { EmailMessage } from '../src/auth/email-sender.js'
import { SmsSendError } from '../src/auth/sms-sender.js'
import { ConsoleEmailSender } from '../src/email/console-email-sender.js'
import { SmtpEmailSender } from '../src/email/smtp-email-sender.js'
import { createLogger } from '../src/log.js'
import { LogCapture } from './harness.js'
import {
  bodyOf,
  headerOf,
  secretForms,
  SMTP_PASSWORD,
  SMTP_USER,
  smtpError,
  startSmtpServer,
} from './smtp-support.js'

const USER = SMTP_USER
const PASSWORD = SMTP_PASSWORD
const FROM = 'OtpAuth <no-reply@example.com>'
const CODE = '493817'

/** Every spelling of the password an error could leak. */
const SECRET_FORMS = secretForms(PASSWORD)

function codeMail(to = 'user@example.com'): EmailMessage {
  return {
    to,
    code: CODE,
    purpose: 'email_verify',
    subject: `${CODE} is your OtpAuth code`,
    text: `OtpAuth: your code to add this email address is ${CODE}. It expires in 10 minutes. Do not share it.`,
    html: `<p>OtpAuth: your code to add this email address is <b>${CODE}</b>. It expires in 10 minutes.</p>`,
  }
}

function startSender(url: URL, timeoutMs = 2_000): SmtpEmailSender {
  const sender = new SmtpEmailSender({ url, from: FROM, timeoutMs })
  onTestFinished(() => sender.close())
  return sender
}

/**
 * failureOf awaits a send that must fail and returns its SmsSendError, after checking that no
 * spelling of the password is in it, in its cause chain, or in the log line it makes.
 */
async function failureOf(sending: Promise<void>): Promise<SmsSendError> {
  const error: unknown = await sending.then(
    () => expect.fail('the send succeeded'),
    (e: unknown) => e,
  )
  expect(error).toBeInstanceOf(SmsSendError)
  const logs = new LogCapture()
  createLogger('info', logs).error({ err: error }, 'email send failed')
  await new Promise((resolve) => setImmediate(resolve))
  const seen = [logs.text, String(error), JSON.stringify(error)]
  for (let e: unknown = error; e instanceof Error; e = e.cause) seen.push(e.message, e.stack ?? '')
  for (const text of seen) {
    for (const secret of SECRET_FORMS) expect(text).not.toContain(secret)
  }
  return error as SmsSendError
}

describe('SMTP email sender', () => {
  it('when a code is sent, then it arrives from the configured From, code in the subject, with both bodies', async () => {
    const smtp = await startSmtpServer()
    const sender = startSender(smtp.url())
    const mail = codeMail()

    await sender.send(mail)

    expect(smtp.received).toHaveLength(1)
    const got = smtp.received[0]
    expect(got?.mailFrom).toBe('no-reply@example.com')
    expect(got?.rcptTo).toEqual(['user@example.com'])
    const raw = got?.raw ?? ''
    expect(headerOf(raw, 'From')).toBe(FROM)
    expect(headerOf(raw, 'To')).toBe('user@example.com')
    expect(headerOf(raw, 'Subject')).toBe(`${CODE} is your OtpAuth code`)
    expect(headerOf(raw, 'Auto-Submitted')).toBe('auto-generated')
    expect(bodyOf(raw, 'text/plain')).toBe(mail.text)
    expect(bodyOf(raw, 'text/html')).toBe(mail.html)
  })

  it.each(['PLAIN', 'LOGIN'])(
    'when the server offers only AUTH %s, then the sender logs in with the URL credentials, percent-decoded',
    async (method) => {
      const smtp = await startSmtpServer({ authMethods: [method] })
      const sender = startSender(smtp.url())

      await sender.send(codeMail())

      expect(smtp.authMethods).toEqual([method])
      expect(smtp.received).toHaveLength(1)
    },
  )

  it('when several codes are sent, then they share one pooled connection', async () => {
    const smtp = await startSmtpServer()
    const sender = startSender(smtp.url())

    for (const to of ['a@example.com', 'b@example.com', 'c@example.com']) {
      await sender.send(codeMail(to))
    }

    expect(smtp.received.map((r) => r.rcptTo[0])).toEqual([
      'a@example.com',
      'b@example.com',
      'c@example.com',
    ])
    expect(smtp.connections).toBe(1)
    expect(smtp.authMethods).toHaveLength(1)
  })

  it('when the sender is closed, then its pooled connection is closed', async () => {
    const smtp = await startSmtpServer()
    const sender = new SmtpEmailSender({ url: smtp.url(), from: FROM, timeoutMs: 2_000 })
    await sender.send(codeMail())

    await sender.close()

    await expect.poll(() => smtp.closed).toBe(1)
  })

  it.each([
    [550, '5.1.1 Mailbox unavailable'],
    [553, '5.1.3 Mailbox name not allowed'],
  ])('when the server answers %i to RCPT TO, then the failure is permanent', async (code, text) => {
    const smtp = await startSmtpServer({
      onRcptTo(_address, _session, callback) {
        callback(smtpError(code, text))
      },
    })
    const sender = startSender(smtp.url())

    const error = await failureOf(sender.send(codeMail()))

    expect(error.kind).toBe('permanent')
    expect(error.providerCode).toBe(String(code))
    expect(error.message).toContain('RCPT TO')
    expect(error.message).toContain(text)
    expect(smtp.received).toHaveLength(0)
  })

  it('when the server refuses the message after DATA with 554, then the failure is permanent', async () => {
    const smtp = await startSmtpServer({
      onData(stream, _session, callback) {
        stream.resume()
        stream.on('end', () => {
          callback(smtpError(554, '5.6.0 Message content rejected'))
        })
      },
    })
    const sender = startSender(smtp.url())

    const error = await failureOf(sender.send(codeMail()))

    expect(error.kind).toBe('permanent')
    expect(error.providerCode).toBe('554')
  })

  it.each([
    [451, '4.7.1 Greylisted, please try again in 5 minutes', 300_000],
    [450, '4.2.1 Mailbox busy, retry after 30 seconds', 30_000],
    [452, '4.5.3 Too many recipients', undefined],
  ])(
    'when the server answers %i to RCPT TO, then the failure is transient, with the wait it names',
    async (code, text, retryAfterMs) => {
      const smtp = await startSmtpServer({
        onRcptTo(_address, _session, callback) {
          callback(smtpError(code, text))
        },
      })
      const sender = startSender(smtp.url())

      const error = await failureOf(sender.send(codeMail()))

      expect(error.kind).toBe('transient')
      expect(error.providerCode).toBe(String(code))
      expect(error.retryAfterMs).toBe(retryAfterMs)
    },
  )

  it('when the server greets with 421, then the failure is transient', async () => {
    const smtp = await startSmtpServer({
      onConnect(_session, callback) {
        callback(smtpError(421, '4.3.2 Too busy, try again in 60 seconds'))
      },
    })
    const sender = startSender(smtp.url())

    const error = await failureOf(sender.send(codeMail()))

    expect(error.kind).toBe('transient')
    expect(error.providerCode).toBe('421')
    expect(error.retryAfterMs).toBe(60_000)
  })

  it('when nothing listens on the port, then the failure is transient', async () => {
    const probe = createNetServer()
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
    const port = (probe.address() as AddressInfo).port
    await new Promise((resolve) => probe.close(resolve))
    const url = new URL(
      `smtp://${encodeURIComponent(USER)}:${encodeURIComponent(PASSWORD)}@127.0.0.1:${port}`,
    )
    const sender = startSender(url)

    const error = await failureOf(sender.send(codeMail()))

    expect(error.kind).toBe('transient')
    expect(error.providerCode).toBe('ECONNREFUSED')
  })

  it('when the host name does not resolve, then the failure is transient', async () => {
    const sender = startSender(
      new URL(
        `smtp://${encodeURIComponent(USER)}:${encodeURIComponent(PASSWORD)}@mail.invalid:587`,
      ),
    )

    const error = await failureOf(sender.send(codeMail()))

    expect(error.kind).toBe('transient')
  })

  it('when the password is wrong, then 535 is transient and the password appears nowhere', async () => {
    const smtp = await startSmtpServer()
    const sender = startSender(smtp.url('smtp', `${PASSWORD}-wrong`))

    const error = await failureOf(sender.send(codeMail()))

    expect(error.kind).toBe('transient')
    expect(error.providerCode).toBe('535')
    expect(error.message).toContain('credentials')
    expect(error.message).not.toContain(`${PASSWORD}-wrong`)
    expect(smtp.received).toHaveLength(0)
  })

  it('when a server echoes the credentials back in its refusal, then the error shows them masked', async () => {
    const smtp = await startSmtpServer({
      onAuth(auth, _session, callback) {
        callback(smtpError(535, `5.7.8 bad password ${auth.password ?? ''}`))
      },
    })
    const sender = startSender(smtp.url())

    const error = await failureOf(sender.send(codeMail()))

    expect(error.message).toContain('5.7.8 bad password ***')
  })

  it('when smtps:// meets a certificate it cannot verify, then the failure is transient', async () => {
    // secure: TLS from the first byte, with smtp-server's bundled self-signed certificate.
    const smtp = await startSmtpServer({ secure: true })
    const sender = startSender(smtp.url('smtps'))

    const error = await failureOf(sender.send(codeMail()))

    expect(error.kind).toBe('transient')
    expect(smtp.received).toHaveLength(0)
  })

  it('when smtp:// leads off loopback to a server without STARTTLS, then the password is never sent', async () => {
    const smtp = await startSmtpServer()
    // 0.0.0.0 reaches the loopback listener, but is not a loopback name, so TLS is required.
    const url = smtp.url()
    url.hostname = '0.0.0.0'
    const sender = startSender(url)

    const error = await failureOf(sender.send(codeMail()))

    expect(error.kind).toBe('transient')
    expect(error.message).toContain('STARTTLS')
    expect(smtp.connections).toBe(1)
    expect(smtp.authMethods).toEqual([])
  })

  it('when the server drops the connection at RCPT TO, before the body, then the failure is transient', async () => {
    const smtp = await startSmtpServer({
      onRcptTo(_address, session) {
        smtp.dropClient(session.remotePort)
      },
    })
    const sender = startSender(smtp.url())

    const error = await failureOf(sender.send(codeMail()))

    expect(error.kind).toBe('transient')
  })

  it('when the server takes the body and never answers, then the outcome is unknown within timeoutMs', async () => {
    const smtp = await startSmtpServer({
      onData(stream) {
        stream.resume()
      },
    })
    const timeoutMs = 500
    const sender = startSender(smtp.url(), timeoutMs)

    const started = performance.now()
    const error = await failureOf(sender.send(codeMail()))
    const elapsed = performance.now() - started

    expect(error.kind).toBe('unknown')
    expect(error.providerCode).toBe('ETIMEDOUT')
    expect(elapsed).toBeGreaterThanOrEqual(timeoutMs - 5)
    expect(elapsed).toBeLessThan(timeoutMs + 500)
  })

  it('when the server drops the connection after the body, then the outcome is unknown', async () => {
    const smtp = await startSmtpServer({
      onData(stream, session) {
        stream.resume()
        stream.on('end', () => {
          smtp.dropClient(session.remotePort)
        })
      },
    })
    const sender = startSender(smtp.url())

    const error = await failureOf(sender.send(codeMail()))

    expect(error.kind).toBe('unknown')
  })

  it.each(['a@example.com, b@example.com', 'user@example.com\r\nBcc: x@example.com', 'no-at-sign'])(
    'when the address is %j, then the failure is permanent and nothing is sent',
    async (to) => {
      const smtp = await startSmtpServer()
      const sender = startSender(smtp.url())

      const error = await failureOf(sender.send(codeMail(to)))

      expect(error.kind).toBe('permanent')
      expect(smtp.connections).toBe(0)
    },
  )

  it('when the URL has a query, then the sender refuses to start and hides the password', () => {
    const url = new URL(
      `smtp://${encodeURIComponent(USER)}:${encodeURIComponent(PASSWORD)}@127.0.0.1:25/?tls.rejectUnauthorized=false`,
    )

    const error: unknown = (() => {
      try {
        new SmtpEmailSender({ url, from: FROM, timeoutMs: 1_000 })
      } catch (e) {
        return e
      }
      return undefined
    })()

    expect(error).toBeInstanceOf(Error)
    const message = (error as Error).message
    expect(message).toContain('no path or query')
    for (const secret of SECRET_FORMS) expect(message).not.toContain(secret)
  })
})

describe('Console email sender', () => {
  it('when it is built, then it warns; when it sends, then it logs to, purpose, subject and text', async () => {
    const logs = new LogCapture()
    const log = createLogger('info', logs)

    const sender = new ConsoleEmailSender(log)
    await sender.send(codeMail())
    log.flush()
    await new Promise((resolve) => setImmediate(resolve))

    const [warning, sent] = logs.entries()
    expect(warning).toMatchObject({ level: 40 })
    expect(String(warning?.['msg'])).toContain('For development only')
    expect(sent?.['email']).toEqual({
      to: 'user@example.com',
      purpose: 'email_verify',
      subject: `${CODE} is your OtpAuth code`,
      text: codeMail().text,
    })
  })
})
