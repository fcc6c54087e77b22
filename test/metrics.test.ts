import { describe, expect, it } from 'vitest'
import { checkHealth } from '../src/health/check-health.js'
import {
  failure,
  loginWithPassword,
  PHONES,
  signUpVerified,
  startTestServer,
  type TestServer,
} from './harness.js'

async function scrape(t: TestServer): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${t.app.metricsPort}/metrics`)
  expect(res.status).toBe(200)
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/)
  return res.text()
}

/** value reads one sample, such as `grpc_server_handled_total{…}`, from the exposition text. */
function value(text: string, name: string, labels: Record<string, string>): number | undefined {
  const line = text
    .split('\n')
    .find(
      (l) =>
        l.startsWith(`${name}{`) &&
        Object.entries(labels).every(([k, v]) => l.includes(`${k}="${v}"`)),
    )
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1))
}

describe('Prometheus metrics', () => {
  it('when OTPAUTH_METRICS_ADDRESS is unset, then nothing listens', async () => {
    const t = await startTestServer()
    expect(t.app.metricsPort).toBeUndefined()
    expect(t.app.httpPort).toBeUndefined()
  })

  it('when calls succeed and fail, then per-RPC, code, SMS, lockout and cache metrics count them', async () => {
    // Arrange
    const t = await startTestServer({ config: { metricsAddress: '127.0.0.1:0' } })
    const attacker = t.as('203.0.113.50')

    // Act
    await t.client.register({ phoneNumber: PHONES.alice }, t.as('198.51.100.1'))
    t.sms.failNext()
    await failure(t.client.register({ phoneNumber: PHONES.bob }, t.as('198.51.100.1')))
    for (let i = 0; i < 3; i += 1) {
      await failure(t.client.verifyOtp({ phoneNumber: PHONES.alice, code: '000000' }, attacker))
    }
    await failure(t.client.verifyOtp({ phoneNumber: PHONES.alice, code: '000000' }, attacker))
    const text = await scrape(t)

    // Assert
    const rpc = { grpc_type: 'unary', grpc_service: 'otpauth.v1.OtpAuth' }
    expect(value(text, 'grpc_server_started_total', { ...rpc, grpc_method: 'VerifyOtp' })).toBe(4)
    expect(value(text, 'grpc_server_started_total', { ...rpc, grpc_method: 'Logout' })).toBe(0)
    expect(
      value(text, 'grpc_server_handled_total', {
        ...rpc,
        grpc_method: 'VerifyOtp',
        grpc_code: 'UNAUTHENTICATED',
      }),
    ).toBe(3)
    expect(
      value(text, 'grpc_server_handled_total', {
        ...rpc,
        grpc_method: 'VerifyOtp',
        grpc_code: 'RESOURCE_EXHAUSTED',
      }),
    ).toBe(1)
    expect(
      value(text, 'grpc_server_handled_total', {
        ...rpc,
        grpc_method: 'Register',
        grpc_code: 'UNAVAILABLE',
      }),
    ).toBe(1)
    expect(
      value(text, 'grpc_server_handling_seconds_count', { ...rpc, grpc_method: 'Register' }),
    ).toBe(2)
    expect(text).toContain('grpc_server_handling_seconds_bucket{le="0.001"')
    // Per country: the conversion rate fraud tools watch (codes verified / codes sent).
    const sent = { purpose: 'register', result: 'sent', country: 'US' }
    expect(value(text, 'otpauth_codes_sent_total', sent)).toBe(1)
    expect(
      value(text, 'otpauth_codes_sent_total', { ...sent, result: 'transient', country: 'US' }),
    ).toBe(1)
    expect(value(text, 'otpauth_sms_failures_total', { purpose: 'register' })).toBe(1)
    expect(
      value(text, 'otpauth_sms_send_seconds_count', { purpose: 'register', result: 'sent' }),
    ).toBe(1)
    expect(
      value(text, 'otpauth_codes_verified_total', {
        purpose: 'register',
        result: 'rejected',
        country: 'US',
      }),
    ).toBe(3)
    expect(text).toMatch(/^otpauth_active_lockouts 1$/m)
    expect(text).toMatch(/^otpauth_challenge_cache_entries 1$/m)
    expect(text).toContain('process_cpu_seconds_total')
  })

  it('when emails are sent or refused, then otpauth_emails_sent_total counts them by purpose and outcome', async () => {
    const t = await startTestServer({ config: { metricsAddress: '127.0.0.1:0' } })
    await signUpVerified(t, PHONES.alice, 'metrics password')
    const { sessionToken } = await loginWithPassword(t, PHONES.alice, 'metrics password', '1.2.3.4')

    await t.client.addEmail({ sessionToken, email: 'ana@example.com' })
    t.email.failNext(1, 'permanent')
    await failure(t.client.addEmail({ sessionToken, email: 'bob@example.com' }))
    const text = await scrape(t)

    const sent = { purpose: 'email_verify', result: 'sent' }
    expect(value(text, 'otpauth_emails_sent_total', sent)).toBe(1)
    expect(value(text, 'otpauth_emails_sent_total', { ...sent, result: 'permanent' })).toBe(1)
    expect(value(text, 'otpauth_email_send_seconds_count', sent)).toBe(1)
  })

  it('when the lockout ends, then the active-lockouts gauge drops at the next scrape', async () => {
    const t = await startTestServer({ config: { metricsAddress: '127.0.0.1:0' } })
    for (let i = 0; i < 3; i += 1) {
      await failure(
        t.client.verifyOtp({ phoneNumber: PHONES.carol, code: '000000' }, t.as('203.0.113.9')),
      )
    }
    expect(await scrape(t)).toMatch(/^otpauth_active_lockouts 1$/m)
    t.clock.advance(3_600_000)
    expect(await scrape(t)).toMatch(/^otpauth_active_lockouts 0$/m)
  })
})

describe('Container health probe', () => {
  it('when the server runs, then the probe sees SERVING; when it stops, NOT_SERVING or a failed call', async () => {
    const t = await startTestServer()
    expect(await checkHealth(t.address, '', 3_000)).toBe('SERVING')
    expect(await checkHealth(t.address, 'otpauth.v1.OtpAuth', 3_000)).toBe('SERVING')
    t.app.health.setStatus('otpauth.v1.OtpAuth', 'NOT_SERVING')
    expect(await checkHealth(t.address, 'otpauth.v1.OtpAuth', 3_000)).toBe('NOT_SERVING')
    await t.app.stop()
    await expect(checkHealth(t.address, '', 1_000)).rejects.toThrow()
  })
})
