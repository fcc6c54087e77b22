import { describe, expect, it } from 'vitest'
import { failure, PHONES, startTestServer } from './harness.js'

const PASSWORD = 'very secret passphrase'

describe('Logging', () => {
  it('when a full flow runs, then each RPC logs one line with rpc, status, ms and client, and no code, password or token', async () => {
    const t = await startTestServer()
    const as = t.as('198.51.100.77')

    await t.client.register({ phoneNumber: PHONES.alice, password: PASSWORD }, as)
    const signUpCode = t.sms.lastCodeFor(PHONES.alice, 'register')
    await t.client.verifyOtp({ phoneNumber: PHONES.alice, code: signUpCode }, as)
    const byPassword = await t.client.login(
      { phoneNumber: PHONES.alice, credential: { $case: 'password', value: PASSWORD } },
      as,
    )
    t.clock.advance(30_000)
    await t.client.requestLoginCode({ phoneNumber: PHONES.alice }, as)
    const loginCode = t.sms.lastCodeFor(PHONES.alice, 'login')
    const byCode = await t.client.login(
      { phoneNumber: PHONES.alice, credential: { $case: 'code', value: loginCode } },
      as,
    )
    await t.client.validateSession({ sessionToken: byPassword.sessionToken }, as)
    await t.client.logout({ sessionToken: byPassword.sessionToken }, as)
    await failure(
      t.client.login(
        { phoneNumber: PHONES.alice, credential: { $case: 'password', value: `${PASSWORD}!` } },
        as,
      ),
    )
    await failure(t.client.validateSession({ sessionToken: byPassword.sessionToken }, as))
    // Malformed: nothing to end, so OK like any token that names no live session.
    await t.client.logout({ sessionToken: `${byCode.sessionToken}x` }, as)

    const rpcLines = t.logs.entries().filter((e) => 'rpc' in e)
    expect(rpcLines.map((e) => [e['rpc'], e['status']])).toEqual([
      ['Register', 'OK'],
      ['VerifyOtp', 'OK'],
      ['Login', 'OK'],
      ['RequestLoginCode', 'OK'],
      ['Login', 'OK'],
      // ValidateSession's OK line is debug (high volume); its refusal below is info.
      ['Logout', 'OK'],
      ['Login', 'UNAUTHENTICATED'],
      ['ValidateSession', 'UNAUTHENTICATED'],
      ['Logout', 'OK'],
    ])
    for (const line of rpcLines) {
      expect(line['client']).toBe('198.51.100.77')
      expect(typeof line['ms']).toBe('number')
      expect(line['ms']).toBeGreaterThanOrEqual(0)
    }

    const secrets = [
      signUpCode,
      loginCode,
      PASSWORD,
      byPassword.sessionToken,
      byCode.sessionToken,
      // Token fragments too: a truncated token in a log is still a leak.
      byPassword.sessionToken.slice(0, 16),
      byCode.sessionToken.slice(-16),
    ]
    for (const secret of secrets) expect(t.logs.text).not.toContain(secret)
  })

  it('when the SMS provider fails, then the error is logged with its cause but without the code', async () => {
    const t = await startTestServer({ randomInt: () => 987_654 })
    t.sms.failNext()

    await failure(t.client.register({ phoneNumber: PHONES.alice, password: PASSWORD }))

    const line = t.logs.entries().find((e) => e['rpc'] === 'Register')
    expect(line?.['status']).toBe('UNAVAILABLE')
    expect(line?.['level']).toBe(50)
    expect(JSON.stringify(line?.['err'])).toContain('SMS provider refused (test, transient)')
    expect(t.logs.text).not.toContain('987654')
    expect(t.logs.text).not.toContain(PASSWORD)
  })
})
