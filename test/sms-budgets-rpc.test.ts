/**
 * The SMS budgets seen from the API (issue 10, SMS-pumping defence): a global daily cap, a
 * per-country daily cap and a per-prefix hourly cap, charged on every SMS path (the no-send paths
 * too) and given back when nothing was sent. The budgets themselves are tested in
 * sms-budget.test.ts; here, through the real server on the store of this run.
 */
import { status } from '@grpc/grpc-js'
import { describe, expect, it } from 'vitest'
import type { Config, SmsBudgets } from '../src/config.js'
import type { OtpAuthError } from '../src/client/otpauth-client.js'
import {
  failure,
  loginWithPassword,
  PHONES,
  signUpVerified,
  startTestServer,
  visible,
  type TestServer,
} from './harness.js'

const SECOND = 1_000
const MINUTE = 60 * SECOND
const HOUR = 60 * MINUTE
const DAY = 24 * HOUR
const COOLDOWN = 30 * SECOND
const PASSWORD = 'sms budgets password'
/** More valid US numbers in Alice's and Bob's prefix (+1 415 55…). */
const SAME_PREFIX = ['+14155552673', '+14155552674', '+14155552675', '+14155552676'] as const
/** Valid US numbers, each in a prefix of its own. */
const NEW_YORK = '+12125551234'
const CHICAGO = '+13125551234'
/** In Dave's prefix (+49 151 12…). */
const BERLIN = '+4915112345670'
const PARIS = '+33612345678'
const SYDNEY = '+61412345678'

function budgets(limits: Partial<SmsBudgets>): Partial<Config> {
  return {
    smsBudgets: {
      globalPerDay: 1_000,
      perCountryPerDay: 1_000,
      perPrefixPerHour: 1_000,
      prefixDigits: 5,
      ...limits,
    },
  }
}

/** login gives a fresh, privileged session of a verified account. */
async function login(t: TestServer, phone: string): Promise<string> {
  return (await loginWithPassword(t, phone, PASSWORD, '198.51.100.30')).sessionToken
}

function expectBudgetRefusal(err: OtpAuthError, budget: string, retryMs: number): void {
  expect([err.code, err.reason, err.domain]).toEqual([
    status.RESOURCE_EXHAUSTED,
    'SMS_BUDGET_EXHAUSTED',
    'otpauth',
  ])
  expect(err.retryDelayMs).toBe(retryMs)
  expect(err.errorMetadata).toEqual({
    budget,
    retryAfterSeconds: String(Math.ceil(retryMs / SECOND)),
  })
}

async function scrape(t: TestServer): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${t.app.metricsPort}/metrics`)
  expect(res.status).toBe(200)
  return res.text()
}

/** sample reads one sample of a metric with exactly these labels; undefined if there is none. */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  const want = Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .sort()
    .join(',')
  for (const line of text.split('\n')) {
    const match = /^([a-z_]+)\{([^}]*)\} (\S+)$/.exec(line)
    if (match?.[1] !== name) continue
    const have = (match[2] ?? '').split(',').sort().join(',')
    if (have === want) return Number(match[3])
  }
  return undefined
}

describe('SMS budgets over the API', () => {
  it("when a prefix has had its hourly budget, then Register, RequestLoginCode and RequestPhoneChange to it are RESOURCE_EXHAUSTED SMS_BUDGET_EXHAUSTED with RetryInfo to the hour's end and ErrorInfo budget prefix", async () => {
    const t = await startTestServer({ config: budgets({ perPrefixPerHour: 3 }) })
    await signUpVerified(t, PHONES.alice, PASSWORD)
    await signUpVerified(t, PHONES.carol, PASSWORD)
    // A new UTC hour (the sign-up is in the last one), 15 minutes in.
    t.clock.advance(HOUR + 15 * MINUTE)
    const carol = await login(t, PHONES.carol)
    const sent = t.sms.messages.length

    // Three sends to the prefix, one by each path.
    await t.client.register({ phoneNumber: SAME_PREFIX[0] })
    await t.client.requestLoginCode({ phoneNumber: PHONES.alice })
    await t.client.requestPhoneChange({ sessionToken: carol, newPhoneNumber: SAME_PREFIX[1] })
    const register = await failure(t.client.register({ phoneNumber: SAME_PREFIX[2] }))
    const loginCode = await failure(t.client.requestLoginCode({ phoneNumber: PHONES.bob }))
    const phoneChange = await failure(
      t.client.requestPhoneChange({ sessionToken: carol, newPhoneNumber: SAME_PREFIX[3] }),
    )

    expectBudgetRefusal(register, 'prefix', 45 * MINUTE)
    expect(register.message).toBe('the SMS budget for this destination is used up; try again later')
    expect(visible(loginCode)).toEqual(visible(register))
    expect(visible(phoneChange)).toEqual(visible(register))
    expect(t.sms.messages.slice(sent).map((m) => [m.phone, m.purpose])).toEqual([
      [SAME_PREFIX[0], 'register'],
      [PHONES.alice, 'login'],
      [SAME_PREFIX[1], 'phone_change'],
    ])
    // Another prefix is not held up.
    await t.client.register({ phoneNumber: NEW_YORK })

    // Refused until the hour's last millisecond; the next hour has the whole budget again.
    t.clock.advance(45 * MINUTE - 1)
    expectBudgetRefusal(
      await failure(t.client.register({ phoneNumber: SAME_PREFIX[2] })),
      'prefix',
      1,
    )
    t.clock.advance(1)
    await t.client.register({ phoneNumber: SAME_PREFIX[2] })
    await t.client.requestLoginCode({ phoneNumber: PHONES.alice })
    await t.client.requestPhoneChange({
      sessionToken: await login(t, PHONES.carol),
      newPhoneNumber: SAME_PREFIX[3],
    })
    expect(t.sms.messages.slice(-3).map((m) => [m.phone, m.purpose])).toEqual([
      [SAME_PREFIX[2], 'register'],
      [PHONES.alice, 'login'],
      [SAME_PREFIX[3], 'phone_change'],
    ])
  })

  it('when the no-send paths use up a prefix budget, then they were charged exactly like sends: a verified and an unknown number in that prefix answer alike', async () => {
    const t = await startTestServer({ config: budgets({ perPrefixPerHour: 3 }) })
    await signUpVerified(t, PHONES.alice, PASSWORD)
    await signUpVerified(t, PHONES.carol, PASSWORD)
    t.clock.advance(HOUR)
    const carol = await login(t, PHONES.carol)
    const sent = t.sms.messages.length

    // Three calls that send nothing: a login code for an unknown number, a Register of a verified
    // one, a phone change to a taken one.
    await t.client.requestLoginCode({ phoneNumber: PHONES.bob })
    await t.client.register({ phoneNumber: PHONES.alice })
    t.clock.advance(COOLDOWN)
    await t.client.requestPhoneChange({ sessionToken: carol, newPhoneNumber: PHONES.alice })
    expect(t.sms.messages.slice(sent)).toEqual([])
    t.clock.advance(COOLDOWN)
    const refusals = {
      'RequestLoginCode, verified': await failure(
        t.client.requestLoginCode({ phoneNumber: PHONES.alice }),
      ),
      'RequestLoginCode, unknown': await failure(
        t.client.requestLoginCode({ phoneNumber: SAME_PREFIX[0] }),
      ),
      'Register, verified': await failure(t.client.register({ phoneNumber: PHONES.alice })),
      'Register, unknown': await failure(t.client.register({ phoneNumber: SAME_PREFIX[0] })),
      'RequestPhoneChange, taken': await failure(
        t.client.requestPhoneChange({ sessionToken: carol, newPhoneNumber: PHONES.alice }),
      ),
      'RequestPhoneChange, free': await failure(
        t.client.requestPhoneChange({ sessionToken: carol, newPhoneNumber: SAME_PREFIX[0] }),
      ),
    }

    const first = refusals['RequestLoginCode, verified']
    expectBudgetRefusal(first, 'prefix', HOUR - 2 * COOLDOWN)
    for (const [name, err] of Object.entries(refusals)) {
      expect(visible(err), name).toEqual(visible(first))
    }
    expect(t.sms.messages.slice(sent)).toEqual([])
  })

  it('when a send fails for now or for good, then its charge is given back, and calls answered from a delivery mark charge nothing', async () => {
    const t = await startTestServer({ config: budgets({ perPrefixPerHour: 2 }) })

    t.sms.failNext(1, 'transient')
    expect((await failure(t.client.register({ phoneNumber: PHONES.alice }))).reason).toBe(
      'SMS_UNAVAILABLE',
    )
    t.sms.failNext(1, 'permanent')
    expect((await failure(t.client.register({ phoneNumber: PHONES.bob }))).reason).toBe(
      'PHONE_NUMBER_UNDELIVERABLE',
    )
    // Answered from the marks, on a send path and a no-send path.
    expect((await failure(t.client.register({ phoneNumber: PHONES.alice }))).reason).toBe(
      'SMS_UNAVAILABLE',
    )
    expect((await failure(t.client.requestLoginCode({ phoneNumber: PHONES.bob }))).reason).toBe(
      'PHONE_NUMBER_UNDELIVERABLE',
    )

    // The prefix still has its two sends.
    await t.client.register({ phoneNumber: SAME_PREFIX[0] })
    await t.client.register({ phoneNumber: SAME_PREFIX[1] })
    expectBudgetRefusal(
      await failure(t.client.register({ phoneNumber: SAME_PREFIX[2] })),
      'prefix',
      HOUR,
    )
    expect(t.sms.messages.map((m) => m.phone)).toEqual([SAME_PREFIX[0], SAME_PREFIX[1]])
  })

  it('when a send outcome is unknown, then it keeps its charge like a delivered send', async () => {
    const t = await startTestServer({ config: budgets({ perPrefixPerHour: 2 }) })

    t.sms.failNext(1, 'unknown')
    await t.client.register({ phoneNumber: PHONES.alice })
    await t.client.register({ phoneNumber: PHONES.bob })
    const err = await failure(t.client.register({ phoneNumber: SAME_PREFIX[0] }))

    expectBudgetRefusal(err, 'prefix', HOUR)
  })

  it("when a budget refuses, then neither the number's cooldown nor the client's hourly sends are charged", async () => {
    const t = await startTestServer({
      config: { ...budgets({ perPrefixPerHour: 1 }), sendsPerClientPerHour: 2 },
    })
    const client = t.as('203.0.113.40')
    t.clock.advance(59 * MINUTE)
    await t.client.register({ phoneNumber: PHONES.alice }, client)

    // Five refusals from a client with one send left, two of them to the same number at once.
    const refused = [
      await failure(t.client.register({ phoneNumber: PHONES.bob }, client)),
      await failure(t.client.register({ phoneNumber: PHONES.bob }, client)),
      await failure(t.client.requestLoginCode({ phoneNumber: SAME_PREFIX[0] }, client)),
      await failure(t.client.register({ phoneNumber: SAME_PREFIX[1] }, client)),
      await failure(t.client.register({ phoneNumber: SAME_PREFIX[2] }, client)),
    ]
    for (const err of refused) expectBudgetRefusal(err, 'prefix', MINUTE)

    // The next hour: Bob's send goes at once, on the client's one send left.
    t.clock.advance(MINUTE)
    await t.client.register({ phoneNumber: PHONES.bob }, client)
    expect(t.sms.sentTo(PHONES.bob)).toHaveLength(1)
    expect((await failure(t.client.register({ phoneNumber: NEW_YORK }, client))).reason).toBe(
      'CLIENT_SEND_LIMIT',
    )
  })

  it('when the global daily budget is used up, then every SMS path for any country is refused with budget global until UTC midnight', async () => {
    const t = await startTestServer({ config: budgets({ globalPerDay: 3 }) })
    t.clock.advance(10 * HOUR)

    await t.client.register({ phoneNumber: PHONES.alice })
    await t.client.register({ phoneNumber: PHONES.carol })
    await t.client.requestLoginCode({ phoneNumber: PHONES.dave }) // no send, charged alike
    const paris = await failure(t.client.register({ phoneNumber: PARIS }))
    const sydney = await failure(t.client.requestLoginCode({ phoneNumber: SYDNEY }))

    expectBudgetRefusal(paris, 'global', 14 * HOUR)
    expect(visible(sydney)).toEqual(visible(paris))
    t.clock.advance(14 * HOUR - 1)
    expectBudgetRefusal(await failure(t.client.register({ phoneNumber: PARIS })), 'global', 1)
    t.clock.advance(1)
    await t.client.register({ phoneNumber: PARIS })
    expect(t.sms.sentTo(PARIS)).toHaveLength(1)
  })

  it("when a country has had its daily budget, then its numbers are refused with budget country until UTC midnight, in any prefix, and other countries' are not", async () => {
    const t = await startTestServer({ config: budgets({ perCountryPerDay: 2 }) })
    t.clock.advance(20 * HOUR)

    await t.client.register({ phoneNumber: PHONES.alice })
    await t.client.register({ phoneNumber: NEW_YORK })
    const chicago = await failure(t.client.register({ phoneNumber: CHICAGO }))
    await t.client.register({ phoneNumber: PHONES.dave })

    expectBudgetRefusal(chicago, 'country', 4 * HOUR)
    expect(t.sms.sentTo(CHICAGO)).toEqual([])
    expect(t.sms.sentTo(PHONES.dave)).toHaveLength(1)
    t.clock.advance(4 * HOUR)
    await t.client.register({ phoneNumber: CHICAGO })
  })

  it('when several budgets refuse at once, then ErrorInfo names them all and RetryInfo waits for the latest window', async () => {
    const t = await startTestServer({
      config: budgets({ perPrefixPerHour: 1, perCountryPerDay: 1 }),
    })
    t.clock.advance(12 * HOUR + 30 * MINUTE)

    await t.client.register({ phoneNumber: PHONES.alice })
    const both = await failure(t.client.register({ phoneNumber: PHONES.bob }))
    const countryOnly = await failure(t.client.register({ phoneNumber: NEW_YORK }))

    expectBudgetRefusal(both, 'prefix,country', 11 * HOUR + 30 * MINUTE)
    expectBudgetRefusal(countryOnly, 'country', 11 * HOUR + 30 * MINUTE)
  })

  it('when test numbers ask for codes, then the budgets neither stop nor count them', async () => {
    const testNumber = '+4915112345679'
    const t = await startTestServer({
      config: { ...budgets({ globalPerDay: 1 }), testNumbers: new Map([[testNumber, '135790']]) },
    })

    for (let i = 0; i < 3; i += 1) await t.client.register({ phoneNumber: testNumber })
    await t.client.register({ phoneNumber: PHONES.alice })
    const refused = await failure(t.client.register({ phoneNumber: PHONES.bob }))
    await t.client.register({ phoneNumber: testNumber })

    expectBudgetRefusal(refused, 'global', DAY)
    expect(t.sms.messages.map((m) => m.phone)).toEqual([PHONES.alice])
    await t.client.verifyOtp({ phoneNumber: testNumber, code: '135790' })
  })

  it('when budgets refuse and codes are sent, then otpauth_sms_budget_refusals_total{budget,country} and otpauth_codes_sent_total{country} count them', async () => {
    const t = await startTestServer({
      config: {
        ...budgets({ globalPerDay: 4, perPrefixPerHour: 1 }),
        metricsAddress: '127.0.0.1:0',
      },
    })

    await t.client.register({ phoneNumber: PHONES.alice }) // sent, US
    await failure(t.client.register({ phoneNumber: PHONES.bob })) // prefix, US
    await t.client.register({ phoneNumber: PHONES.carol }) // sent, GG
    await t.client.requestLoginCode({ phoneNumber: PHONES.dave }) // charged, not sent, DE
    await failure(t.client.register({ phoneNumber: BERLIN })) // prefix, DE
    await t.client.register({ phoneNumber: PARIS }) // sent, FR
    await failure(t.client.requestLoginCode({ phoneNumber: SYDNEY })) // global, AU
    const text = await scrape(t)

    const refusals = 'otpauth_sms_budget_refusals_total'
    expect(sample(text, refusals, { budget: 'prefix', country: 'US' })).toBe(1)
    expect(sample(text, refusals, { budget: 'prefix', country: 'DE' })).toBe(1)
    expect(sample(text, refusals, { budget: 'global', country: 'AU' })).toBe(1)
    expect(sample(text, refusals, { budget: 'country', country: 'US' })).toBeUndefined()
    const sent = 'otpauth_codes_sent_total'
    for (const country of ['US', 'GG', 'FR']) {
      expect(sample(text, sent, { purpose: 'register', result: 'sent', country }), country).toBe(1)
    }
    // A no-send path and a refused send are not codes sent.
    for (const country of ['DE', 'AU']) {
      expect(text, country).not.toMatch(new RegExp(`^${sent}\\{[^}]*country="${country}"`, 'm'))
    }
  })
})
