import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { status } from '@grpc/grpc-js'
import { describe, expect, it, onTestFinished } from 'vitest'
import { startApp } from '../src/app.js'
import { OtpAuthClient } from '../src/client/otpauth-client.js'
import { createLogger } from '../src/log.js'
import { failure, FakeClock, LogCapture, PHONES, testConfig } from './harness.js'

interface Received {
  method: string | undefined
  contentType: string | undefined
  body: unknown
}

type Behaviour = (res: ServerResponse) => void

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
      received.push({
        method: req.method,
        contentType: req.headers['content-type'],
        body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown,
      })
      const behave = gateway.next.shift() ?? ((r: ServerResponse) => r.writeHead(204).end())
      behave(res)
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
async function startWithWebhook(url: string, timeoutMs = 1_000) {
  const dir = mkdtempSync(join(tmpdir(), 'otpauth-webhook-'))
  const clock = new FakeClock()
  const logs = new LogCapture()
  const config = testConfig(dir, { sms: { kind: 'webhook', url: new URL(url), timeoutMs } })
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

  it('when the gateway answers non-2xx, then UNAVAILABLE SMS_UNAVAILABLE, and an immediate retry is not held up by the cooldown', async () => {
    const gateway = await startGateway()
    const s = await startWithWebhook(gateway.url)

    for (const code of [500, 503, 429, 400, 302]) {
      gateway.next.push((res) => res.writeHead(code, { location: 'http://127.0.0.1:1/' }).end('no'))
      const err = await failure(s.client.register({ phoneNumber: PHONES.alice }))
      expect(err.code, `HTTP ${code}`).toBe(status.UNAVAILABLE)
      expect(err.reason).toBe('SMS_UNAVAILABLE')
      expect(err.domain).toBe('otpauth')
    }

    await s.client.register({ phoneNumber: PHONES.alice })
    const code = bodyOf(gateway.received.at(-1))['code'] ?? ''
    await s.client.verifyOtp({ phoneNumber: PHONES.alice, code })
  })

  it('when the gateway is slower than the timeout, then UNAVAILABLE within about the timeout', async () => {
    const gateway = await startGateway()
    const s = await startWithWebhook(gateway.url, 150)
    gateway.next.push(() => {
      // Never answers; the test's cleanup closes the connection.
    })

    const started = performance.now()
    const err = await failure(s.client.register({ phoneNumber: PHONES.alice }))
    const elapsed = performance.now() - started

    expect(err.code).toBe(status.UNAVAILABLE)
    expect(err.reason).toBe('SMS_UNAVAILABLE')
    expect(elapsed).toBeGreaterThanOrEqual(100)
    expect(elapsed).toBeLessThan(3_000)
    // The failed send charged no cooldown: the next request goes straight through.
    await s.client.register({ phoneNumber: PHONES.alice })
    expect(gateway.received).toHaveLength(2)
  })

  it('when the gateway sends 200 but never finishes the body, then UNAVAILABLE at the timeout', async () => {
    const gateway = await startGateway()
    const s = await startWithWebhook(gateway.url, 150)
    gateway.next.push((res) => {
      res.writeHead(200, { 'content-length': '100' })
      res.write('{"ok":')
    })

    const err = await failure(s.client.register({ phoneNumber: PHONES.alice }))

    expect(err.code).toBe(status.UNAVAILABLE)
    expect(err.reason).toBe('SMS_UNAVAILABLE')
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
})
