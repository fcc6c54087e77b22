import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { status } from '@grpc/grpc-js'
import { describe, expect, it, onTestFinished } from 'vitest'
import { startApp } from '../src/app.js'
import { systemClock } from '../src/auth/clock.js'
import { SmsSendError, type SmsMessage } from '../src/auth/sms-sender.js'
import { OtpAuthClient } from '../src/client/otpauth-client.js'
import { ConfigError, loadConfig } from '../src/config.js'
import { createLogger } from '../src/log.js'
import { WebhookSmsSender, type WebhookSmsSenderOptions } from '../src/sms/webhook-sms-sender.js'
import { failure, FakeClock, LogCapture, PHONES, testConfig } from './harness.js'

interface Received {
  method: string | undefined
  contentType: string | undefined
  headers: IncomingHttpHeaders
  /** The body exactly as it arrived, for signature checks. */
  raw: string
  body: unknown
}

type Behaviour = (res: ServerResponse, req: IncomingMessage) => void

/** A local SMS gateway: records every request and answers as `next` says (204 by default). */
async function startGateway() {
  const received: Received[] = []
  const gateway = {
    received,
    next: [] as Behaviour[],
    url: '',
  }
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8')
      received.push({
        method: req.method,
        contentType: req.headers['content-type'],
        headers: req.headers,
        raw,
        body: JSON.parse(raw) as unknown,
      })
      const behave = gateway.next.shift() ?? ((r: ServerResponse) => r.writeHead(204).end())
      behave(res, req)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  gateway.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/sms`
  onTestFinished(async () => {
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  })
  return gateway
}

/** The real service with the webhook sender (no SMS override), on a temp SQLite file. */
async function startWithWebhook(url: string, timeoutMs = 1_000, secret?: Buffer) {
  const dir = mkdtempSync(join(tmpdir(), 'otpauth-webhook-'))
  const clock = new FakeClock()
  const logs = new LogCapture()
  const config = testConfig(dir, {
    sms: { kind: 'webhook', url: new URL(url), timeoutMs, secret },
  })
  const app = await startApp(config, createLogger('info', logs), { clock })
  const client = new OtpAuthClient(`127.0.0.1:${app.port}`, {
    channelOptions: { 'grpc.use_local_subchannel_pool': 1 },
  })
  onTestFinished(async () => {
    client.close()
    await app.stop()
    rmSync(dir, { recursive: true, force: true })
  })
  return { app, client, clock, logs }
}

function bodyOf(received: Received | undefined): Record<string, string> {
  return received?.body as Record<string, string>
}

/** A sender on its own, for the outcomes the service's rules turn into answers. */
function webhook(url: string, options: Partial<WebhookSmsSenderOptions> = {}): WebhookSmsSender {
  let next = 0
  return new WebhookSmsSender({
    url: new URL(url),
    timeoutMs: 1_000,
    clock: systemClock,
    newMessageId: () => `msg_test${(next += 1)}`,
    ...options,
  })
}

const MESSAGE: SmsMessage = {
  phone: PHONES.alice,
  code: '482915',
  purpose: 'login',
  text: 'OtpAuth: your login code is 482915. It expires in 5 minutes. Do not share it.',
  validForSeconds: 300,
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

type VerifyWebhook = (
  secret: string,
  headers: IncomingHttpHeaders,
  rawBody: string,
  nowSeconds?: number,
) => boolean

/**
 * loadDocumentedReceiver imports the receiver docs/sms-providers.md shows, exactly as written
 * there: an independent check of the signature, and a check that the docs' code works.
 */
async function loadDocumentedReceiver(): Promise<VerifyWebhook> {
  const docs = readFileSync(new URL('../docs/sms-providers.md', import.meta.url), 'utf8')
  const block = /```js\n([\s\S]*?export function verifyWebhook[\s\S]*?)```/.exec(docs)?.[1]
  if (block === undefined) throw new Error('docs/sms-providers.md has no verifyWebhook block')
  const dir = mkdtempSync(join(tmpdir(), 'otpauth-receiver-'))
  onTestFinished(() => {
    rmSync(dir, { recursive: true, force: true })
  })
  const file = join(dir, 'receiver.mjs')
  writeFileSync(file, block)
  const module = (await import(pathToFileURL(file).href)) as { verifyWebhook: VerifyWebhook }
  return module.verifyWebhook
}

function newSecret(): { key: Buffer; text: string } {
  const key = randomBytes(32)
  return { key, text: `whsec_${key.toString('base64')}` }
}

describe('Webhook SMS sender', () => {
  it('when a code is sent, then the gateway gets a JSON POST with phone_number, code, message and purpose', async () => {
    const gateway = await startGateway()
    const s = await startWithWebhook(gateway.url)

    await s.client.register({ phoneNumber: '+1 415 555 2671', password: 'webhook password' })

    expect(gateway.received).toHaveLength(1)
    const [sent] = gateway.received
    expect(sent?.method).toBe('POST')
    expect(sent?.contentType).toMatch(/^application\/json/)
    const body = bodyOf(sent)
    expect(Object.keys(body).sort()).toEqual(['code', 'message', 'phone_number', 'purpose'])
    expect(body['phone_number']).toBe(PHONES.alice)
    expect(body['purpose']).toBe('register')
    expect(body['code']).toMatch(/^[0-9]{6}$/)
    expect(body['message']).toContain(body['code'])
    // Unsigned without a secret.
    expect(sent?.headers).not.toHaveProperty('webhook-signature')

    await s.client.verifyOtp({ phoneNumber: PHONES.alice, code: body['code'] ?? '' })
    s.clock.advance(30_000)
    await s.client.requestLoginCode({ phoneNumber: PHONES.alice })
    const login = bodyOf(gateway.received[1])
    expect(login['purpose']).toBe('login')
    await s.client.login({
      phoneNumber: PHONES.alice,
      credential: { $case: 'code', value: login['code'] ?? '' },
    })
  })

  it('when the gateway answers 5xx, then the call is UNAVAILABLE SMS_UNAVAILABLE', async () => {
    const gateway = await startGateway()
    const s = await startWithWebhook(gateway.url)
    gateway.next.push((res) => res.writeHead(503).end('down'))

    const err = await failure(s.client.register({ phoneNumber: PHONES.alice }))

    expect(err.code).toBe(status.UNAVAILABLE)
    expect(err.reason).toBe('SMS_UNAVAILABLE')
    expect(err.domain).toBe('otpauth')
  })

  it('when a resend fails at the gateway, then the previous code stays valid', async () => {
    const gateway = await startGateway()
    const s = await startWithWebhook(gateway.url)
    await s.client.register({ phoneNumber: PHONES.alice })
    const first = bodyOf(gateway.received[0])['code'] ?? ''
    s.clock.advance(30_000)
    gateway.next.push((res) => res.writeHead(500).end())

    await failure(s.client.register({ phoneNumber: PHONES.alice }))

    await s.client.verifyOtp({ phoneNumber: PHONES.alice, code: first })
  })

  it('when the gateway cannot be reached, then UNAVAILABLE and the log has the failure but not the code', async () => {
    const gateway = await startGateway()
    const s = await startWithWebhook(gateway.url.replace(/:\d+\//, ':1/'))

    const err = await failure(s.client.register({ phoneNumber: PHONES.alice }))

    expect(err.code).toBe(status.UNAVAILABLE)
    expect(err.reason).toBe('SMS_UNAVAILABLE')
    const line = s.logs.entries().find((e) => e['rpc'] === 'Register')
    expect(line?.['status']).toBe('UNAVAILABLE')
    expect(gateway.received).toEqual([])
  })

  it('when OTPAUTH_SMS_WEBHOOK_SECRET is set, then every request the service makes verifies with the documented receiver', async () => {
    const verifyWebhook = await loadDocumentedReceiver()
    const secret = newSecret()
    const config = loadConfig({
      OTPAUTH_SMS: 'webhook',
      OTPAUTH_SMS_WEBHOOK_URL: 'http://127.0.0.1:1/sms',
      OTPAUTH_SMS_WEBHOOK_SECRET: secret.text,
    })
    expect(config.sms).toMatchObject({ kind: 'webhook', secret: secret.key })
    const gateway = await startGateway()
    const s = await startWithWebhook(gateway.url, 1_000, secret.key)

    await s.client.register({ phoneNumber: PHONES.alice })
    await s.client.register({ phoneNumber: PHONES.bob })

    expect(gateway.received).toHaveLength(2)
    for (const sent of gateway.received) {
      expect(verifyWebhook(secret.text, sent.headers, sent.raw)).toBe(true)
      expect(sent.headers['webhook-id']).toMatch(/^msg_[0-9a-f]{32}$/)
      // Wall time, not the service's fake clock: receivers compare it with theirs.
      expect(Math.abs(Number(sent.headers['webhook-timestamp']) - Date.now() / 1000)).toBeLessThan(
        60,
      )
    }
    expect(gateway.received[0]?.headers['webhook-id']).not.toBe(
      gateway.received[1]?.headers['webhook-id'],
    )
  })
})

describe('Webhook outcomes, as the sender reports them', () => {
  it.each([200, 201, 202, 204])(
    'when the gateway answers %i, then the message is accepted',
    async (code) => {
      const gateway = await startGateway()
      gateway.next.push((res) => res.writeHead(code).end())

      await webhook(gateway.url).send(MESSAGE)

      expect(bodyOf(gateway.received[0])).toEqual({
        phone_number: PHONES.alice,
        code: '482915',
        message: MESSAGE.text,
        purpose: 'login',
      })
    },
  )

  it('when a notice is sent, then its body has no code', async () => {
    const gateway = await startGateway()

    await webhook(gateway.url).send({ ...MESSAGE, code: '', purpose: 'phone_change_notice' })

    expect(bodyOf(gateway.received[0])).not.toHaveProperty('code')
  })

  it('when the gateway answers 422, then the failure is permanent', async () => {
    const gateway = await startGateway()
    gateway.next.push((res) => res.writeHead(422).end('{"error":"landline"}'))

    const err = await sendFailure(webhook(gateway.url).send(MESSAGE))

    expect([err.kind, err.providerCode, err.retryAfterMs]).toEqual(['permanent', '422', undefined])
  })

  it.each([
    [429, { 'retry-after': '12' }, 12_000],
    [500, {}, undefined],
    [502, {}, undefined],
    [503, { 'retry-after': '3' }, 3_000],
    [400, {}, undefined],
    [404, {}, undefined],
    [410, {}, undefined],
    [302, { location: 'http://127.0.0.1:1/' }, undefined],
  ])(
    'when the gateway answers %i, then the failure is transient (Retry-After %o)',
    async (code, headers, retryAfterMs) => {
      const gateway = await startGateway()
      gateway.next.push((res) => res.writeHead(code, headers).end('no'))

      const err = await sendFailure(webhook(gateway.url).send(MESSAGE))

      expect([err.kind, err.providerCode, err.retryAfterMs]).toEqual([
        'transient',
        String(code),
        retryAfterMs,
      ])
      expect(gateway.received).toHaveLength(1)
    },
  )

  it('when Retry-After is a date, then the delay is counted from the answer’s Date header', async () => {
    const gateway = await startGateway()
    gateway.next.push((res) => {
      res.sendDate = false
      res
        .writeHead(503, {
          date: 'Thu, 01 Jan 2026 10:00:00 GMT',
          'retry-after': 'Thu, 01 Jan 2026 10:01:00 GMT',
        })
        .end()
    })

    const err = await sendFailure(webhook(gateway.url).send(MESSAGE))

    expect(err.retryAfterMs).toBe(60_000)
  })

  it('when the connection is refused, then transient', async () => {
    const gateway = await startGateway()

    const err = await sendFailure(webhook(gateway.url.replace(/:\d+\//, ':1/')).send(MESSAGE))

    expect(err.kind).toBe('transient')
  })

  it('when the gateway takes the request and never answers, then unknown at about the timeout', async () => {
    const gateway = await startGateway()
    gateway.next.push(() => {
      // Never answers; the test's cleanup closes the connection.
    })

    const started = performance.now()
    const err = await sendFailure(webhook(gateway.url, { timeoutMs: 150 }).send(MESSAGE))
    const elapsed = performance.now() - started

    expect(err.kind).toBe('unknown')
    expect(elapsed).toBeGreaterThanOrEqual(100)
    expect(elapsed).toBeLessThan(3_000)
  })

  it('when the connection is destroyed after the whole request arrived, then unknown', async () => {
    const gateway = await startGateway()
    gateway.next.push((_res, req) => req.socket.destroy())

    const err = await sendFailure(webhook(gateway.url).send(MESSAGE))

    expect(err.kind).toBe('unknown')
    expect(gateway.received).toHaveLength(1)
  })

  it('when the gateway sends 200 but never finishes the body, then the message is accepted at once', async () => {
    const gateway = await startGateway()
    gateway.next.push((res) => {
      res.writeHead(200, { 'content-length': '100' })
      res.write('{"ok":')
    })

    const started = performance.now()
    await webhook(gateway.url, { timeoutMs: 2_000 }).send(MESSAGE)

    expect(performance.now() - started).toBeLessThan(1_000)
  })

  it('when the gateway answers an error slowly and never finishes its body, then the status still decides, at the timeout', async () => {
    const gateway = await startGateway()
    gateway.next.push((res) => {
      res.writeHead(422, { 'content-length': '100' })
      res.write('{"error":')
    })

    const err = await sendFailure(webhook(gateway.url, { timeoutMs: 150 }).send(MESSAGE))

    expect(err.kind).toBe('permanent')
  })
})

describe('Webhook signing (Standard Webhooks)', () => {
  it('when a secret is set, then webhook-id, webhook-timestamp and a v1 signature of id.timestamp.body are sent, and a new id per message', async () => {
    const verifyWebhook = await loadDocumentedReceiver()
    const gateway = await startGateway()
    const secret = newSecret()
    const clock = new FakeClock(Date.UTC(2026, 4, 1, 12, 0, 0))
    const sender = webhook(gateway.url, { secret: secret.key, clock })

    await sender.send(MESSAGE)
    await sender.send(MESSAGE)

    const [first, second] = gateway.received
    expect(first?.headers['webhook-id']).toBe('msg_test1')
    expect(second?.headers['webhook-id']).toBe('msg_test2')
    expect(first?.headers['webhook-timestamp']).toBe(String(Date.UTC(2026, 4, 1, 12) / 1000))
    expect(first?.headers['webhook-signature']).toMatch(/^v1,[A-Za-z0-9+/]{43}=$/)
    const now = Date.UTC(2026, 4, 1, 12, 0, 10) / 1000
    for (const sent of [first, second]) {
      expect(verifyWebhook(secret.text, sent?.headers ?? {}, sent?.raw ?? '', now)).toBe(true)
    }
  })

  it('when the body, the id, the timestamp or the key differ, or the request is over 5 minutes old, then the documented receiver refuses it', async () => {
    const verifyWebhook = await loadDocumentedReceiver()
    const gateway = await startGateway()
    const secret = newSecret()
    const sentAt = Date.UTC(2026, 4, 1, 12) / 1000
    await webhook(gateway.url, {
      secret: secret.key,
      clock: new FakeClock(sentAt * 1000),
    }).send(MESSAGE)
    const sent = gateway.received[0]
    const headers = sent?.headers ?? {}
    const raw = sent?.raw ?? ''

    expect(verifyWebhook(secret.text, headers, raw, sentAt + 299)).toBe(true)
    expect(verifyWebhook(secret.text, headers, raw.replace('482915', '482916'), sentAt)).toBe(false)
    expect(verifyWebhook(secret.text, { ...headers, 'webhook-id': 'msg_other' }, raw, sentAt)).toBe(
      false,
    )
    expect(
      verifyWebhook(
        secret.text,
        { ...headers, 'webhook-timestamp': String(sentAt + 1) },
        raw,
        sentAt,
      ),
    ).toBe(false)
    expect(verifyWebhook(newSecret().text, headers, raw, sentAt)).toBe(false)
    expect(verifyWebhook(secret.text, headers, raw, sentAt + 301)).toBe(false)
    expect(verifyWebhook(secret.text, headers, raw, sentAt - 301)).toBe(false)
  })

  it('when OTPAUTH_SMS_WEBHOOK_SECRET is not whsec_ and base64 of 24 to 64 bytes, then start-up names it without echoing it', () => {
    for (const bad of [
      'not-a-secret',
      randomBytes(32).toString('base64'),
      `whsec_${randomBytes(16).toString('base64')}`,
      `whsec_${randomBytes(65).toString('base64')}`,
      'whsec_!!!!',
    ]) {
      let problems: readonly string[] = []
      try {
        loadConfig({
          OTPAUTH_SMS: 'webhook',
          OTPAUTH_SMS_WEBHOOK_URL: 'https://sms.example/send',
          OTPAUTH_SMS_WEBHOOK_SECRET: bad,
        })
      } catch (error) {
        if (!(error instanceof ConfigError)) throw error
        problems = error.problems
      }
      expect(problems, bad).toHaveLength(1)
      expect(problems[0]).toContain('OTPAUTH_SMS_WEBHOOK_SECRET')
      expect(problems[0]).not.toContain(bad)
    }
  })
})
