import { status } from '@grpc/grpc-js'
import { describe, expect, it } from 'vitest'
import type { OtpAuthError } from '../src/client/otpauth-client.js'
import { failure, PHONES, signUpVerified, startTestServer, type TestServer } from './harness.js'

function password(t: TestServer, phone: string, value: string, ip: string) {
  return t.client.login({ phoneNumber: phone, credential: { $case: 'password', value } }, t.as(ip))
}

let failuresSent = 0

/**
 * fails `count` password logins for the number, at most 2 per address (below the lockout), a
 * batch of 10 at a time.
 */
async function failFromManyAddresses(t: TestServer, phone: string, count: number): Promise<void> {
  for (let done = 0; done < count; done += 10) {
    const batch = Array.from({ length: Math.min(10, count - done) }, (_, i) => {
      const n = Math.floor(failuresSent++ / 2)
      const ip = `10.${Math.floor(n / 250)}.${n % 250}.1`
      return failure(password(t, phone, `wrong password ${done + i}`, ip))
    })
    for (const err of await Promise.all(batch)) expect(err.reason).toBe('INVALID_CREDENTIALS')
  }
}

function expectDisabled(err: OtpAuthError): void {
  expect(err.code).toBe(status.FAILED_PRECONDITION)
  expect(err.reason).toBe('PASSWORD_LOGIN_DISABLED')
  expect(err.domain).toBe('otpauth')
}

describe('Per-number failure cap', () => {
  it('when a number had 100 consecutive failed password logins from many addresses, then password login is refused even with the right password, for known and unknown numbers alike', async () => {
    const t = await startTestServer()
    await signUpVerified(t, PHONES.alice, 'alice password')

    await failFromManyAddresses(t, PHONES.alice, 100)
    await failFromManyAddresses(t, PHONES.carol, 100)

    const known = await failure(password(t, PHONES.alice, 'alice password', '198.51.100.1'))
    const unknown = await failure(password(t, PHONES.carol, 'any password', '198.51.100.2'))
    expectDisabled(known)
    expect([unknown.code, unknown.message, unknown.reason, unknown.domain]).toEqual([
      known.code,
      known.message,
      known.reason,
      known.domain,
    ])
    // Other numbers are unaffected.
    await signUpVerified(t, PHONES.bob, 'bob password')
    await password(t, PHONES.bob, 'bob password', '198.51.100.1')
  })

  it('when a number is one failure short of the cap, then the right password still logs in and the count starts again', async () => {
    const t = await startTestServer({ config: { numberFailureLimit: 5 } })
    await signUpVerified(t, PHONES.alice, 'alice password')

    await failFromManyAddresses(t, PHONES.alice, 4)
    await password(t, PHONES.alice, 'alice password', '198.51.100.1')
    await failFromManyAddresses(t, PHONES.alice, 4)

    await password(t, PHONES.alice, 'alice password', '198.51.100.1')
  })

  it('when password login is disabled, then a successful code login re-enables it', async () => {
    const t = await startTestServer({ config: { numberFailureLimit: 5 } })
    await signUpVerified(t, PHONES.alice, 'alice password')
    await failFromManyAddresses(t, PHONES.alice, 5)
    expectDisabled(await failure(password(t, PHONES.alice, 'alice password', '198.51.100.1')))

    t.clock.advance(30_000)
    await t.client.requestLoginCode({ phoneNumber: PHONES.alice })
    await t.client.login({
      phoneNumber: PHONES.alice,
      credential: { $case: 'code', value: t.sms.lastCodeFor(PHONES.alice, 'login') },
    })

    const res = await password(t, PHONES.alice, 'alice password', '198.51.100.1')
    expect(res.message).toBe('Login successful')
  })

  it('when password login is disabled, then refusals do not lock the client out and time alone does not lift it', async () => {
    const t = await startTestServer({ config: { numberFailureLimit: 5 } })
    await signUpVerified(t, PHONES.alice, 'alice password')
    await failFromManyAddresses(t, PHONES.alice, 5)

    for (let i = 0; i < 5; i += 1) {
      expectDisabled(await failure(password(t, PHONES.alice, 'alice password', '198.51.100.1')))
    }
    t.clock.advance(7 * 86_400_000)
    const after = await t.restart()
    expectDisabled(await failure(password(after, PHONES.alice, 'alice password', '198.51.100.1')))

    // The same client was never locked out: its code login goes through.
    await after.client.requestLoginCode({ phoneNumber: PHONES.alice }, after.as('198.51.100.1'))
    await after.client.login(
      {
        phoneNumber: PHONES.alice,
        credential: { $case: 'code', value: after.sms.lastCodeFor(PHONES.alice, 'login') },
      },
      after.as('198.51.100.1'),
    )
  })

  it('when failed code logins and failed password logins mix, then both count toward the cap', async () => {
    const t = await startTestServer({ config: { numberFailureLimit: 4 } })
    await signUpVerified(t, PHONES.alice, 'alice password')

    await failFromManyAddresses(t, PHONES.alice, 2)
    for (const ip of ['198.51.100.10', '198.51.100.11']) {
      const err = await failure(
        t.client.login(
          { phoneNumber: PHONES.alice, credential: { $case: 'code', value: '000000' } },
          t.as(ip),
        ),
      )
      expect(err.reason).toBe('INVALID_CREDENTIALS')
    }

    expectDisabled(await failure(password(t, PHONES.alice, 'alice password', '198.51.100.12')))
  })
})
