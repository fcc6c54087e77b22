import { mkdtempSync, rmSync } from 'node:fs'
import { createServer as createNetServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { status } from '@grpc/grpc-js'
import { describe, expect, it, onTestFinished } from 'vitest'
import { startApp } from '../src/app.js'
import { Channel, OtpAuthClient } from '../src/client/otpauth-client.js'
import { createLogger } from '../src/log.js'
import {
  expectFailure,
  failure,
  FakeClock,
  LogCapture,
  PHONES,
  SmsOutbox,
  testConfig,
} from './harness.js'
import {
  bodyOf,
  headerOf,
  secretForms,
  SMTP_PASSWORD,
  smtpUrl,
  startSmtpServer,
} from './smtp-support.js'

// The whole service with OTPAUTH_EMAIL=smtp: the real SmtpEmailSender (nodemailer pool) against an
// in-process SMTP server on loopback. SQLite only: the store is not what this is about.

const PASSWORD = SMTP_PASSWORD
const FROM = 'OtpAuth <no-reply@example.com>'
const ACCOUNT_PASSWORD = 'smtp level password'
const ME = '198.51.100.120'

/** A loopback port nothing listens on (taken from the OS, then given back). */
async function closedPort(): Promise<number> {
  const server = createNetServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  await new Promise<void>((resolve) => {
    server.close(() => {
      resolve()
    })
  })
  return port
}

/** startService runs the service with email over SMTP at `url`, SMS into an outbox. */
async function startService(url: URL) {
  const dir = mkdtempSync(join(tmpdir(), 'otpauth-smtp-'))
  const clock = new FakeClock()
  const sms = new SmsOutbox()
  const logs = new LogCapture()
  const app = await startApp(
    testConfig(dir, { email: { kind: 'smtp', url, from: FROM, timeoutMs: 2_000 } }),
    createLogger('info', logs),
    { clock, sms },
  )
  const client = new OtpAuthClient(`127.0.0.1:${app.port}`, {
    channelOptions: { 'grpc.use_local_subchannel_pool': 1 },
  })
  onTestFinished(async () => {
    client.close()
    await app.stop()
    rmSync(dir, { recursive: true, force: true })
  })
  const as = { metadata: { 'x-forwarded-for': ME } }
  // A verified account with a fresh (privileged) session.
  await client.register({ phoneNumber: PHONES.alice, password: ACCOUNT_PASSWORD }, as)
  await client.verifyOtp(
    { phoneNumber: PHONES.alice, code: sms.lastCodeFor(PHONES.alice, 'register') },
    as,
  )
  const login = await client.login(
    { phoneNumber: PHONES.alice, credential: { $case: 'password', value: ACCOUNT_PASSWORD } },
    as,
  )
  return { app, client, clock, sms, logs, token: login.sessionToken }
}

describe('Email codes over SMTP, through the whole service', () => {
  it('when AddEmail is called, then the mail reaches the SMTP server with the code in the subject and both bodies, and VerifyEmail with that code adds the address', async () => {
    const smtp = await startSmtpServer()
    const s = await startService(smtpUrl(smtp.port))

    const sent = await s.client.addEmail({ sessionToken: s.token, email: 'Ana@Example.com' })

    expect(sent.message).toBe('OTP sent to email address')
    // The server accepted it before AddEmail answered.
    expect(smtp.received).toHaveLength(1)
    const mail = smtp.received[0]
    expect(mail?.mailFrom).toBe('no-reply@example.com')
    expect(mail?.rcptTo).toEqual(['Ana@example.com'])
    const raw = mail?.raw ?? ''
    expect(headerOf(raw, 'From')).toBe(FROM)
    expect(headerOf(raw, 'To')).toBe('Ana@example.com')
    const subject = headerOf(raw, 'Subject') ?? ''
    const code = /^(\d{6}) is your OtpAuth code$/.exec(subject)?.[1] ?? ''
    expect(code, subject).toMatch(/^\d{6}$/)
    expect(bodyOf(raw, 'text/plain')).toContain(`your code to add this email address is ${code}`)
    expect(bodyOf(raw, 'text/html')).toContain(`<strong>${code}</strong>`)
    // Nothing went by SMS but the sign-up code.
    expect(s.sms.messages.map((m) => m.purpose)).toEqual(['register'])

    const verified = await s.client.verifyEmail({ sessionToken: s.token, code })

    expect(verified).toEqual({ email: 'Ana@example.com' })
    // And the address now gets login codes over the same server.
    await s.client.requestLoginCode({ phoneNumber: PHONES.alice, channel: Channel.CHANNEL_EMAIL })
    expect(smtp.received).toHaveLength(2)
    expect(headerOf(smtp.received[1]?.raw ?? '', 'Subject')).toMatch(/^\d{6} is your OtpAuth code$/)
    for (const secret of secretForms(PASSWORD)) expect(s.logs.text).not.toContain(secret)
  })

  it('when the SMTP server is down, then AddEmail is UNAVAILABLE EMAIL_UNAVAILABLE with RetryInfo, nothing is charged, and the SMTP password appears nowhere in the logs', async () => {
    const s = await startService(smtpUrl(await closedPort()))

    const refused = await failure(
      s.client.addEmail({ sessionToken: s.token, email: 'ana@example.com' }),
    )

    expectFailure(refused, status.UNAVAILABLE, 'EMAIL_UNAVAILABLE')
    expect(refused.retryDelayMs).toBe(10_000)
    expect(refused.message).not.toContain('127.0.0.1')
    // The failure was logged (with its cause), and no spelling of the password with it.
    const failed = s.logs.entries().find((e) => e['rpc'] === 'AddEmail')
    expect(failed?.['status']).toBe('UNAVAILABLE')
    expect(JSON.stringify(failed?.['err'])).toMatch(/ECONNREFUSED|connect/i)
    for (const secret of secretForms(PASSWORD)) expect(s.logs.text).not.toContain(secret)
    // Nothing charged: once the mark ends, the next try goes to the server again (still down).
    s.clock.advance(10_000)
    const again = await failure(
      s.client.addEmail({ sessionToken: s.token, email: 'ana@example.com' }),
    )
    expectFailure(again, status.UNAVAILABLE, 'EMAIL_UNAVAILABLE')
    expect(again.retryDelayMs).toBe(10_000)
  })

  it('when the SMTP server refuses the credentials, then AddEmail is UNAVAILABLE EMAIL_UNAVAILABLE and neither the configured nor the real password is in the logs', async () => {
    const smtp = await startSmtpServer()
    const wrongPassword = 'wr:ong/p@ss%?# w0rd'
    const s = await startService(smtpUrl(smtp.port, wrongPassword))

    const refused = await failure(
      s.client.addEmail({ sessionToken: s.token, email: 'ana@example.com' }),
    )

    expectFailure(refused, status.UNAVAILABLE, 'EMAIL_UNAVAILABLE')
    expect(smtp.received).toEqual([])
    const failed = s.logs.entries().find((e) => e['rpc'] === 'AddEmail')
    expect(JSON.stringify(failed?.['err'])).toContain('535')
    for (const secret of [...secretForms(wrongPassword), ...secretForms(PASSWORD)]) {
      expect(s.logs.text).not.toContain(secret)
    }
  })
})
