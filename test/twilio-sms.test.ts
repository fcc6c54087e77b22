import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createServer as createTcpServer, type Socket } from 'node:net'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { inspect } from 'node:util'
import { status } from '@grpc/grpc-js'
import { describe, expect, it, onTestFinished } from 'vitest'
import { startApp } from '../src/app.js'
import { SmsSendError, type SmsMessage } from '../src/auth/sms-sender.js'
import { OtpAuthClient } from '../src/client/otpauth-client.js'
import { ConfigError, loadConfig, type SmsConfig } from '../src/config.js'
import { createLogger } from '../src/log.js'
import { TwilioSmsSender, type TwilioSmsSenderOptions } from '../src/sms/twilio-sms-sender.js'
import { failure, FakeClock, LogCapture, PHONES, testConfig } from './harness.js'

const ACCOUNT_SID = `AC${'0123456789abcdef'.repeat(2)}`
const AUTH_TOKEN = 'f00dfacef00dfacef00dfacef00dface'
const KEY_SID = `SK${'fedcba9876543210'.repeat(2)}`
const KEY_SECRET = 'kS3cr3t-Zq8vW1xY2uT7pL0m'
const SERVICE_SID = `MG${'a1b2c3d4e5f60718'.repeat(2)}`
const FROM = '+15005550006'
const MESSAGES_PATH = `/2010-04-01/Accounts/${ACCOUNT_SID}/Messages.json`

/** Everything that must never reach an error or a log line. */
const CREDENTIALS = [
  AUTH_TOKEN,
  KEY_SECRET,
  Buffer.from(`${ACCOUNT_SID}:${AUTH_TOKEN}`).toString('base64'),
  Buffer.from(`${KEY_SID}:${KEY_SECRET}`).toString('base64'),
  'Basic ',
]

interface TwilioRequest {
  method: string | undefined
  path: string | undefined
  contentType: string | undefined
  /** The decoded HTTP Basic credentials. */
  auth: { username: string; password: string } | undefined
  form: Record<string, string>
}

type Answer = (res: ServerResponse, req: IncomingMessage) => void

/** twilioError answers with Twilio's error JSON, as the real API sends it. */
function twilioError(
  httpStatus: number,
  code: number,
  message: string,
  headers: Record<string, string> = {},
): Answer {
  return (res) =>
    res.writeHead(httpStatus, { 'content-type': 'application/json', ...headers }).end(
      JSON.stringify({
        code,
        message,
        more_info: `https://www.twilio.com/docs/errors/${code}`,
        status: httpStatus,
      }),
    )
}

/** created answers 201 with a Message resource, as Twilio does for an accepted message. */
const created: Answer = (res) =>
  res.writeHead(201, { 'content-type': 'application/json' }).end(
    JSON.stringify({
      account_sid: ACCOUNT_SID,
      api_version: '2010-04-01',
      direction: 'outbound-api',
      error_code: null,
      error_message: null,
      num_segments: '1',
      sid: 'SM0123456789abcdef0123456789abcdef',
      status: 'queued',
      uri: `/2010-04-01/Accounts/${ACCOUNT_SID}/Messages/SM0123456789abcdef0123456789abcdef.json`,
    }),
  )

async function listen(server: Server): Promise<URL> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  onTestFinished(async () => {
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  })
  return new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)
}

/**
 * A fake Twilio API on loopback: checks the path and the Basic credentials like the real one (404
 * 20404, 401 20003), records every request and answers the rest as `next` says (201 by default).
 */
async function startFakeTwilio(credentials = { username: ACCOUNT_SID, password: AUTH_TOKEN }) {
  const fake = { requests: [] as TwilioRequest[], next: [] as Answer[], url: new URL('http://x') }
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const header = req.headers.authorization ?? ''
      let auth: TwilioRequest['auth']
      if (header.startsWith('Basic ')) {
        const decoded = Buffer.from(header.slice(6), 'base64').toString('utf8')
        const colon = decoded.indexOf(':')
        auth = { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) }
      }
      fake.requests.push({
        method: req.method,
        path: req.url,
        contentType: req.headers['content-type'],
        auth,
        form: Object.fromEntries(new URLSearchParams(Buffer.concat(chunks).toString('utf8'))),
      })
      if (req.method !== 'POST' || req.url !== MESSAGES_PATH) {
        twilioError(404, 20404, `The requested resource ${req.url ?? ''} was not found`)(res, req)
      } else if (
        auth?.username !== credentials.username ||
        auth.password !== credentials.password
      ) {
        twilioError(401, 20003, 'Authenticate')(res, req)
      } else (fake.next.shift() ?? created)(res, req)
    })
  })
  fake.url = await listen(server)
  return fake
}

function sender(apiUrl: URL, options: Partial<TwilioSmsSenderOptions> = {}) {
  const logs = new LogCapture()
  const twilio = new TwilioSmsSender({
    apiUrl,
    accountSid: ACCOUNT_SID,
    username: ACCOUNT_SID,
    password: AUTH_TOKEN,
    sender: { from: FROM },
    timeoutMs: 1_000,
    clock: new FakeClock(),
    log: createLogger('info', logs),
    ...options,
  })
  return { twilio, logs }
}

function code(phone: string = PHONES.alice, validForSeconds = 300): SmsMessage {
  return {
    phone,
    code: '482915',
    purpose: 'register',
    text: 'OtpAuth: your sign-up code is 482915. It expires in 5 minutes. Do not share it.',
    validForSeconds,
  }
}

/** sendFailure awaits a send that must fail and returns its SmsSendError. */
async function sendFailure(send: Promise<void>): Promise<SmsSendError> {
  try {
    await send
  } catch (error) {
    if (error instanceof SmsSendError) return error
    throw error
  }
  throw new Error('expected the send to fail, but it was accepted')
}

/** expectNoCredentials checks an error (message, cause chain, as pino logs it) and log lines. */
function expectNoCredentials(error: unknown, logs: LogCapture): void {
  const sink = new LogCapture()
  createLogger('info', sink).error({ err: error }, 'send failed')
  const seen = [inspect(error, { depth: 10, showHidden: true }), sink.text, logs.text].join('\n')
  for (const secret of CREDENTIALS) expect(seen).not.toContain(secret)
}

/** A closed port on loopback: connecting to it is refused. */
async function closedPort(): Promise<URL> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return new URL(`http://127.0.0.1:${port}`)
}

describe('TwilioSmsSender', () => {
  it('when Twilio accepts, then one form POST to the Messages resource carries Basic auth (account SID, auth token), To, Body, From and ValidityPeriod', async () => {
    const fake = await startFakeTwilio()
    const { twilio } = sender(fake.url)

    await twilio.send(code())

    expect(fake.requests).toHaveLength(1)
    const [request] = fake.requests
    expect(request?.method).toBe('POST')
    expect(request?.path).toBe(MESSAGES_PATH)
    expect(request?.contentType).toBe('application/x-www-form-urlencoded')
    expect(request?.auth).toEqual({ username: ACCOUNT_SID, password: AUTH_TOKEN })
    expect(request?.form).toEqual({
      To: PHONES.alice,
      Body: code().text,
      From: FROM,
      ValidityPeriod: '300',
    })
  })

  it('when configured with an API key, then Basic auth is the key SID and secret and the path still names the account', async () => {
    const fake = await startFakeTwilio({ username: KEY_SID, password: KEY_SECRET })
    const { twilio } = sender(fake.url, { username: KEY_SID, password: KEY_SECRET })

    await twilio.send(code())

    expect(fake.requests[0]?.auth).toEqual({ username: KEY_SID, password: KEY_SECRET })
    expect(fake.requests[0]?.path).toBe(MESSAGES_PATH)
  })

  it('when configured with a Messaging Service, then MessagingServiceSid is sent and From is not', async () => {
    const fake = await startFakeTwilio()
    const { twilio } = sender(fake.url, { sender: { messagingServiceSid: SERVICE_SID } })

    await twilio.send(code())

    const form = fake.requests[0]?.form ?? {}
    expect(form['MessagingServiceSid']).toBe(SERVICE_SID)
    expect(form).not.toHaveProperty('From')
  })

  it('when the API URL has a path and a trailing slash, then the Messages path goes under it', async () => {
    const fake = await startFakeTwilio()
    const { twilio } = sender(new URL('/edge/', fake.url))

    // The fake serves only the root path, so it answers 404 20404: a refusal of ours, transient.
    const err = await sendFailure(twilio.send(code()))

    expect(fake.requests[0]?.path).toBe(`/edge${MESSAGES_PATH}`)
    expect([err.kind, err.providerCode]).toEqual(['transient', '20404'])
  })

  it.each([
    [300, '300'],
    [59.9, '59'],
    [86_400, '36000'],
    [0, '1'],
  ])(
    'when the message is valid for %s s, then ValidityPeriod is %s (Twilio accepts 1 to 36000)',
    async (validFor, expected) => {
      const fake = await startFakeTwilio()
      const { twilio } = sender(fake.url)

      await twilio.send(code(PHONES.alice, validFor))

      expect(fake.requests[0]?.form['ValidityPeriod']).toBe(expected)
    },
  )

  it.each([
    [21211, "The 'To' number +15005550001 is not a valid phone number.", '+15005550001'],
    [21610, 'Attempt to send to unsubscribed recipient', '+15005550004'],
    [21614, "'To' number +15005550009 is not a valid mobile number", '+15005550009'],
    [
      21612,
      "The 'To' phone number: +15005550002, is not currently reachable using the 'From' phone number: +15005550006 via SMS.",
      '+15005550002',
    ],
    [
      21408,
      "Permission to send an SMS has not been enabled for the region indicated by the 'To' number: +15005550003.",
      '+15005550003',
    ],
    [21635, "'To' number cannot be a landline", '+15005550010'],
    [21265, "'To' number cannot be a Short Code: +1500555", '+1500555'],
    [21266, "'To' and 'From' number cannot be the same: +15005550006", FROM],
  ])(
    'when Twilio answers 400 with error %i, then the failure is permanent with that code and no phone number in it',
    async (twilioCode, message, phone) => {
      const fake = await startFakeTwilio()
      const { twilio, logs } = sender(fake.url)
      fake.next.push(twilioError(400, twilioCode, message))

      const err = await sendFailure(twilio.send(code(phone)))

      expect(err.kind).toBe('permanent')
      expect(err.providerCode).toBe(String(twilioCode))
      expect(err.retryAfterMs).toBeUndefined()
      expect(err.message).not.toContain(phone)
      expectNoCredentials(err, logs)
    },
  )

  it('when Twilio answers 429 with error 20429 and Retry-After, then transient with that delay', async () => {
    const fake = await startFakeTwilio()
    const { twilio } = sender(fake.url)
    fake.next.push(twilioError(429, 20429, 'Too Many Requests', { 'retry-after': '7' }))

    const err = await sendFailure(twilio.send(code()))

    expect(err.kind).toBe('transient')
    expect(err.providerCode).toBe('20429')
    expect(err.retryAfterMs).toBe(7_000)
  })

  it('when Twilio answers 429 with a Retry-After date and no body, then transient with the delay from its Date header', async () => {
    const fake = await startFakeTwilio()
    const { twilio } = sender(fake.url)
    fake.next.push((res) => {
      res.sendDate = false
      res
        .writeHead(429, {
          date: 'Thu, 01 Jan 2026 10:00:00 GMT',
          'retry-after': 'Thu, 01 Jan 2026 10:00:30 GMT',
        })
        .end()
    })

    const err = await sendFailure(twilio.send(code()))

    expect(err.kind).toBe('transient')
    expect(err.providerCode).toBe('429')
    expect(err.retryAfterMs).toBe(30_000)
  })

  it('when Twilio answers 5xx, then transient, with Retry-After when given', async () => {
    const fake = await startFakeTwilio()
    const { twilio, logs } = sender(fake.url)
    fake.next.push(twilioError(500, 20500, 'An internal server error has occurred'))
    fake.next.push((res) =>
      res.writeHead(503, { 'retry-after': '2', 'content-type': 'text/html' }).end('<html>…</html>'),
    )
    fake.next.push((res) => res.writeHead(502).end())

    const first = await sendFailure(twilio.send(code()))
    const second = await sendFailure(twilio.send(code()))
    const third = await sendFailure(twilio.send(code()))

    expect([first.kind, first.providerCode, first.retryAfterMs]).toEqual([
      'transient',
      '20500',
      undefined,
    ])
    expect([second.kind, second.providerCode, second.retryAfterMs]).toEqual([
      'transient',
      '503',
      2_000,
    ])
    expect([third.kind, third.providerCode]).toEqual(['transient', '502'])
    expectNoCredentials(first, logs)
  })

  it('when Twilio refuses the credentials (401 20003), then transient, an error line names the variables, and no credential appears anywhere', async () => {
    for (const [username, password] of [
      [ACCOUNT_SID, AUTH_TOKEN],
      [KEY_SID, KEY_SECRET],
    ] as const) {
      const fake = await startFakeTwilio({ username: ACCOUNT_SID, password: 'the real token' })
      const { twilio, logs } = sender(fake.url, { username, password })

      const err = await sendFailure(twilio.send(code()))

      expect(err.kind).toBe('transient')
      expect(err.providerCode).toBe('20003')
      const line = logs.entries().find((e) => e['level'] === 50)
      expect(line?.['msg']).toContain('OTPAUTH_TWILIO_AUTH_TOKEN')
      expect(line?.['providerCode']).toBe('20003')
      expectNoCredentials(err, logs)
    }
  })

  it('when Twilio answers 403 (a suspended account), then transient and logged as a configuration error', async () => {
    const fake = await startFakeTwilio()
    const { twilio, logs } = sender(fake.url)
    fake.next.push(twilioError(403, 20403, 'Forbidden'))

    const err = await sendFailure(twilio.send(code()))

    expect([err.kind, err.providerCode]).toEqual(['transient', '20403'])
    expect(logs.entries().some((e) => e['level'] === 50)).toBe(true)
  })

  it('when Twilio answers another 4xx (a From it cannot send from, a trial number, no JSON), then transient with its code', async () => {
    const fake = await startFakeTwilio()
    const { twilio } = sender(fake.url)
    fake.next.push(
      twilioError(
        400,
        21606,
        'The From phone number +15005550006 is not a valid, SMS-capable inbound phone number or short code for your account.',
      ),
    )
    fake.next.push(
      twilioError(
        400,
        21608,
        'The number +14155552671 is unverified. Trial accounts cannot send messages to unverified numbers; verify +14155552671 at twilio.com/user/account/phone-numbers/verified, or purchase a Twilio number to send messages to unverified numbers.',
      ),
    )
    fake.next.push((res) => res.writeHead(400).end('not json'))

    const results = [
      await sendFailure(twilio.send(code())),
      await sendFailure(twilio.send(code())),
      await sendFailure(twilio.send(code())),
    ]

    expect(results.map((e) => [e.kind, e.providerCode])).toEqual([
      ['transient', '21606'],
      ['transient', '21608'],
      ['transient', '400'],
    ])
  })

  it('when Twilio answers 201 and the body is cut short, then the message counts as accepted', async () => {
    const fake = await startFakeTwilio()
    const { twilio } = sender(fake.url)
    fake.next.push((res) => {
      res.writeHead(201, { 'content-type': 'application/json', 'content-length': '400' })
      res.write('{"sid": "SM01')
      setTimeout(() => res.destroy(), 20)
    })

    await twilio.send(code())
  })

  it('when the connection is refused, then transient and nothing was sent', async () => {
    const { twilio, logs } = sender(await closedPort())

    const err = await sendFailure(twilio.send(code()))

    expect(err.kind).toBe('transient')
    expect(err.message).toContain('ECONNREFUSED')
    expectNoCredentials(err, logs)
  })

  it('when the API host does not resolve, then transient', async () => {
    const { twilio, logs } = sender(new URL('http://api.twilio.invalid'), { timeoutMs: 3_000 })

    const err = await sendFailure(twilio.send(code()))

    expect(err.kind).toBe('transient')
    expectNoCredentials(err, logs)
  })

  it('when the TLS handshake never completes, then transient at the timeout (the request never went out)', async () => {
    const sockets: Socket[] = []
    const silent = createTcpServer((socket) => {
      sockets.push(socket)
      socket.resume()
    })
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
    onTestFinished(async () => {
      for (const s of sockets) s.destroy()
      await new Promise((resolve) => silent.close(resolve))
    })
    const port = (silent.address() as AddressInfo).port
    const { twilio, logs } = sender(new URL(`https://127.0.0.1:${port}`), { timeoutMs: 200 })

    const err = await sendFailure(twilio.send(code()))

    expect(err.kind).toBe('transient')
    expectNoCredentials(err, logs)
  })

  it('when Twilio takes the request and never answers, then unknown at about the timeout', async () => {
    const fake = await startFakeTwilio()
    const { twilio, logs } = sender(fake.url, { timeoutMs: 200 })
    fake.next.push(() => {
      // Never answers; the test's cleanup closes the connection.
    })

    const started = performance.now()
    const err = await sendFailure(twilio.send(code()))
    const elapsed = performance.now() - started

    expect(err.kind).toBe('unknown')
    expect(fake.requests).toHaveLength(1)
    expect(elapsed).toBeGreaterThanOrEqual(150)
    expect(elapsed).toBeLessThan(3_000)
    expectNoCredentials(err, logs)
  })

  it('when the connection is destroyed after the whole request arrived, then unknown', async () => {
    const fake = await startFakeTwilio()
    const { twilio, logs } = sender(fake.url)
    fake.next.push((_res, req) => req.socket.destroy())

    const err = await sendFailure(twilio.send(code()))

    expect(err.kind).toBe('unknown')
    expect(fake.requests[0]?.form['Body']).toBe(code().text)
    expectNoCredentials(err, logs)
  })

  it('when several messages go out, then they reuse one keep-alive connection', async () => {
    const fake = await startFakeTwilio()
    const ports = new Set<number>()
    fake.next.push(
      ...[1, 2, 3].map((): Answer => (res, req) => {
        ports.add(req.socket.remotePort ?? 0)
        created(res, req)
      }),
    )
    const { twilio } = sender(fake.url)

    for (let i = 0; i < 3; i += 1) await twilio.send(code())

    expect(ports.size).toBe(1)
  })
})

const TWILIO_ENV = {
  OTPAUTH_SMS: 'twilio',
  OTPAUTH_TWILIO_ACCOUNT_SID: ACCOUNT_SID,
  OTPAUTH_TWILIO_AUTH_TOKEN: AUTH_TOKEN,
  OTPAUTH_TWILIO_FROM: FROM,
}

/** problemsOf returns the problems loadConfig reports for env; fails if it accepts it. */
function problemsOf(env: Record<string, string>): readonly string[] {
  try {
    loadConfig(env)
  } catch (error) {
    if (error instanceof ConfigError) return error.problems
    throw error
  }
  throw new Error(`expected ${JSON.stringify(env)} to be rejected`)
}

describe('Twilio configuration', () => {
  it('when OTPAUTH_SMS=twilio with an auth token and From, then the account SID and token are the credentials and the API is api.twilio.com', () => {
    const config = loadConfig({ ...TWILIO_ENV, OTPAUTH_SMS: ' Twilio ' })

    expect(config.sms).toEqual({
      kind: 'twilio',
      apiUrl: new URL('https://api.twilio.com'),
      accountSid: ACCOUNT_SID,
      username: ACCOUNT_SID,
      password: AUTH_TOKEN,
      sender: { from: FROM },
      timeoutMs: 10_000,
    })
  })

  it('when an API key and a Messaging Service are set, then the key SID and secret are the credentials and the service is the sender', () => {
    const config = loadConfig({
      OTPAUTH_SMS: 'twilio',
      OTPAUTH_TWILIO_ACCOUNT_SID: ACCOUNT_SID,
      OTPAUTH_TWILIO_API_KEY_SID: KEY_SID,
      OTPAUTH_TWILIO_API_KEY_SECRET: KEY_SECRET,
      OTPAUTH_TWILIO_MESSAGING_SERVICE_SID: SERVICE_SID,
      OTPAUTH_TWILIO_TIMEOUT_MS: '2500',
      OTPAUTH_TWILIO_API_URL: 'http://127.0.0.1:4010',
    })

    expect(config.sms).toMatchObject({
      kind: 'twilio',
      accountSid: ACCOUNT_SID,
      username: KEY_SID,
      password: KEY_SECRET,
      sender: { messagingServiceSid: SERVICE_SID },
      timeoutMs: 2_500,
    })
    expect((config.sms as Extract<SmsConfig, { kind: 'twilio' }>).apiUrl.href).toBe(
      'http://127.0.0.1:4010/',
    )
  })

  it('when OTPAUTH_TWILIO_FROM is an alphanumeric sender ID, then it is accepted', () => {
    const config = loadConfig({ ...TWILIO_ENV, OTPAUTH_TWILIO_FROM: 'OtpAuth' })

    expect(config.sms).toMatchObject({ sender: { from: 'OtpAuth' } })
  })

  it.each([
    [{ OTPAUTH_TWILIO_ACCOUNT_SID: '' }, 'OTPAUTH_TWILIO_ACCOUNT_SID'],
    [{ OTPAUTH_TWILIO_ACCOUNT_SID: 'AC123' }, 'OTPAUTH_TWILIO_ACCOUNT_SID'],
    [{ OTPAUTH_TWILIO_ACCOUNT_SID: KEY_SID }, 'OTPAUTH_TWILIO_ACCOUNT_SID'],
    [{ OTPAUTH_TWILIO_AUTH_TOKEN: '' }, 'OTPAUTH_TWILIO_AUTH_TOKEN'],
    [{ OTPAUTH_TWILIO_FROM: '' }, 'OTPAUTH_TWILIO_FROM'],
    [{ OTPAUTH_TWILIO_FROM: '4155552671' }, 'OTPAUTH_TWILIO_FROM'],
    [{ OTPAUTH_TWILIO_FROM: 'A sender ID too long' }, 'OTPAUTH_TWILIO_FROM'],
    [{ OTPAUTH_TWILIO_MESSAGING_SERVICE_SID: SERVICE_SID }, 'OTPAUTH_TWILIO_MESSAGING_SERVICE_SID'],
    [
      { OTPAUTH_TWILIO_FROM: '', OTPAUTH_TWILIO_MESSAGING_SERVICE_SID: 'MG1' },
      'OTPAUTH_TWILIO_MESSAGING_SERVICE_SID',
    ],
    [{ OTPAUTH_TWILIO_TIMEOUT_MS: '50' }, 'OTPAUTH_TWILIO_TIMEOUT_MS'],
    [{ OTPAUTH_TWILIO_TIMEOUT_MS: 'soon' }, 'OTPAUTH_TWILIO_TIMEOUT_MS'],
    [{ OTPAUTH_TWILIO_API_URL: 'ftp://api.twilio.com' }, 'OTPAUTH_TWILIO_API_URL'],
    [{ OTPAUTH_TWILIO_API_URL: 'not a url' }, 'OTPAUTH_TWILIO_API_URL'],
    [
      { OTPAUTH_TWILIO_AUTH_TOKEN: '', OTPAUTH_TWILIO_API_KEY_SID: KEY_SID },
      'OTPAUTH_TWILIO_API_KEY_SECRET',
    ],
    [
      { OTPAUTH_TWILIO_AUTH_TOKEN: '', OTPAUTH_TWILIO_API_KEY_SECRET: KEY_SECRET },
      'OTPAUTH_TWILIO_API_KEY_SID',
    ],
    [
      {
        OTPAUTH_TWILIO_AUTH_TOKEN: '',
        OTPAUTH_TWILIO_API_KEY_SID: 'SK123',
        OTPAUTH_TWILIO_API_KEY_SECRET: KEY_SECRET,
      },
      'OTPAUTH_TWILIO_API_KEY_SID',
    ],
  ])(
    'when %o is set over a valid Twilio setup, then start-up names %s (and never a secret value)',
    (change, name) => {
      const problems = problemsOf({ ...TWILIO_ENV, ...change })

      expect(problems.some((p) => p.includes(name))).toBe(true)
      for (const secret of CREDENTIALS) expect(problems.join('\n')).not.toContain(secret)
    },
  )

  it('when both an auth token and an API key are set, then start-up refuses, naming both and neither value', () => {
    const problems = problemsOf({
      ...TWILIO_ENV,
      OTPAUTH_TWILIO_API_KEY_SID: KEY_SID,
      OTPAUTH_TWILIO_API_KEY_SECRET: KEY_SECRET,
    })

    expect(problems).toHaveLength(1)
    expect(problems[0]).toContain('OTPAUTH_TWILIO_AUTH_TOKEN')
    expect(problems[0]).toContain('OTPAUTH_TWILIO_API_KEY_SID')
    for (const secret of CREDENTIALS) expect(problems[0]).not.toContain(secret)
  })

  it('when OTPAUTH_SMS=twilio and nothing else, then every missing variable is named at once', () => {
    const problems = problemsOf({ OTPAUTH_SMS: 'twilio' }).join('\n')

    expect(problems).toContain('OTPAUTH_TWILIO_ACCOUNT_SID')
    expect(problems).toContain('OTPAUTH_TWILIO_AUTH_TOKEN')
    expect(problems).toContain('OTPAUTH_TWILIO_FROM')
  })
})

/** The real service with the Twilio sender (no SMS override), on a temp SQLite file. */
async function startWithTwilio(apiUrl: URL, password = AUTH_TOKEN) {
  const dir = mkdtempSync(join(tmpdir(), 'otpauth-twilio-'))
  const logs = new LogCapture()
  const config = testConfig(dir, {
    sms: {
      kind: 'twilio',
      apiUrl,
      accountSid: ACCOUNT_SID,
      username: ACCOUNT_SID,
      password,
      sender: { from: FROM },
      timeoutMs: 1_000,
    },
  })
  const app = await startApp(config, createLogger('info', logs), { clock: new FakeClock() })
  const client = new OtpAuthClient(`127.0.0.1:${app.port}`, {
    channelOptions: { 'grpc.use_local_subchannel_pool': 1 },
  })
  onTestFinished(async () => {
    client.close()
    await app.stop()
    rmSync(dir, { recursive: true, force: true })
  })
  return { client, logs, config }
}

describe('OTPAUTH_SMS=twilio in the running service', () => {
  it('when a number registers, then Twilio gets one message with the code in Body, valid for the code lifetime, and that code verifies the number', async () => {
    const fake = await startFakeTwilio()
    const s = await startWithTwilio(fake.url)

    await s.client.register({ phoneNumber: PHONES.alice, password: 'twilio password' })

    expect(fake.requests).toHaveLength(1)
    const form = fake.requests[0]?.form ?? {}
    expect(form['To']).toBe(PHONES.alice)
    expect(form['From']).toBe(FROM)
    expect(form['ValidityPeriod']).toBe(String(s.config.codeTtlSeconds))
    const sent = /\b(\d{6})\b/.exec(form['Body'] ?? '')?.[1]
    expect(sent).toBeDefined()
    await s.client.verifyOtp({ phoneNumber: PHONES.alice, code: sent ?? '' })
  })

  it('when Twilio refuses the credentials, then UNAVAILABLE SMS_UNAVAILABLE and the log explains it without the token', async () => {
    const fake = await startFakeTwilio()
    const s = await startWithTwilio(fake.url, 'a revoked token 0123456789')

    const err = await failure(s.client.register({ phoneNumber: PHONES.alice }))

    expect(err.code).toBe(status.UNAVAILABLE)
    expect(err.reason).toBe('SMS_UNAVAILABLE')
    expect(s.logs.text).toContain('OTPAUTH_TWILIO_AUTH_TOKEN')
    expect(s.logs.text).not.toContain('a revoked token 0123456789')
    expect(s.logs.text).not.toContain(
      Buffer.from(`${ACCOUNT_SID}:a revoked token 0123456789`).toString('base64'),
    )
    expect(s.logs.text).not.toContain('Basic ')
  })
})
