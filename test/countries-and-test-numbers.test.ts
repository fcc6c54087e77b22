/**
 * Allowed countries (OTPAUTH_SMS_ALLOWED_COUNTRIES: a number outside is refused before anything
 * else on every SMS path) and test numbers (OTPAUTH_TEST_NUMBERS: fixed codes, no provider, no
 * send limits or budgets, but code tries and lockouts as usual), issue 10.
 */
import { status } from '@grpc/grpc-js'
import { describe, expect, it } from 'vitest'
import { Channel, type OtpAuthError } from '../src/client/otpauth-client.js'
import { loadConfig, type Config } from '../src/config.js'
import {
  expectInvalidCredentials,
  failure,
  loginWithCode,
  loginWithPassword,
  PHONES,
  signUpVerified,
  startTestServer,
  visible,
  wrong,
  type TestServer,
} from './harness.js'

const SECOND = 1_000
const PASSWORD = 'countries password'
/** A GB mobile. PHONES.carol (+44 7911 …) is Guernsey (GG), not GB. */
const LONDON = '+447400123456'
const WASHINGTON = '+12025550143'
const TEST_US = '+13125551235'
const TEST_DE = '+4915112345679'
const TEST_US_CODE = '135790'
const TEST_DE_CODE = '246813'
const ME = '198.51.100.60'

/** Config as the environment gives it, so the variables' parsing is part of the test. */
function fromEnv(env: Record<string, string>): Partial<Config> {
  const { smsAllowedCountries, testNumbers } = loadConfig(env)
  return { smsAllowedCountries, testNumbers }
}

function expectCountryNotAllowed(err: OtpAuthError, field: string): void {
  expect([err.code, err.reason, err.domain]).toEqual([
    status.INVALID_ARGUMENT,
    'COUNTRY_NOT_ALLOWED',
    'otpauth',
  ])
  expect(err.message).toBe('codes are not sent to numbers in this country')
  expect(err.violations.map((v) => v.field)).toEqual([field])
}

/** session signs a number up with a password and logs in: a fresh, privileged session. */
async function session(t: TestServer, phone: string): Promise<string> {
  await signUpVerified(t, phone, PASSWORD)
  return (await loginWithPassword(t, phone, PASSWORD, ME)).sessionToken
}

describe('Allowed countries', () => {
  it('when a number is outside the allowed countries, then Register, RequestLoginCode and RequestPhoneChange answer INVALID_ARGUMENT COUNTRY_NOT_ALLOWED on its field, before any other check', async () => {
    const t = await startTestServer({ config: fromEnv({ OTPAUTH_SMS_ALLOWED_COUNTRIES: 'US' }) })
    const token = await session(t, PHONES.alice)
    const sent = t.sms.messages.length

    const answers = {
      register: await failure(t.client.register({ phoneNumber: PHONES.dave })),
      // Before the password is checked.
      registerBadPassword: await failure(
        t.client.register({ phoneNumber: PHONES.dave, password: 'short' }),
      ),
      // National format with its own country code, still Germany.
      registerNational: await failure(t.client.register({ phoneNumber: '+49 151 12345678' })),
      loginCode: await failure(t.client.requestLoginCode({ phoneNumber: PHONES.dave })),
      loginCodeSms: await failure(
        t.client.requestLoginCode({ phoneNumber: PHONES.dave, channel: Channel.CHANNEL_SMS }),
      ),
      guernsey: await failure(t.client.requestLoginCode({ phoneNumber: PHONES.carol })),
    }
    const phoneChanges = {
      live: await failure(
        t.client.requestPhoneChange({ sessionToken: token, newPhoneNumber: PHONES.dave }),
      ),
      // Before the session is looked at: a malformed or an unknown token changes nothing.
      malformedToken: await failure(
        t.client.requestPhoneChange({ sessionToken: 'not a token', newPhoneNumber: PHONES.dave }),
      ),
      unknownToken: await failure(
        t.client.requestPhoneChange({ sessionToken: 'A'.repeat(43), newPhoneNumber: PHONES.dave }),
      ),
    }

    for (const [name, err] of Object.entries(answers)) {
      expectCountryNotAllowed(err, 'phone_number')
      expect(visible(err), name).toEqual(visible(answers.register))
    }
    for (const [name, err] of Object.entries(phoneChanges)) {
      expectCountryNotAllowed(err, 'new_phone_number')
      expect(visible(err), name).toEqual(visible(phoneChanges.live))
    }
    expect(t.sms.messages.slice(sent)).toEqual([])
    // A number that does not parse is still INVALID_PHONE_NUMBER: the country comes from the number.
    const bad = await failure(t.client.register({ phoneNumber: '12' }))
    expect(bad.reason).toBe('INVALID_PHONE_NUMBER')
  })

  it('when refused for its country, then nothing is charged: no cooldown, no client send, no budget', async () => {
    const t = await startTestServer({
      config: {
        ...fromEnv({ OTPAUTH_SMS_ALLOWED_COUNTRIES: 'US' }),
        sendsPerClientPerHour: 2,
        smsBudgets: { globalPerDay: 2, perCountryPerDay: 2, perPrefixPerHour: 2, prefixDigits: 5 },
      },
    })
    const client = t.as('203.0.113.60')

    for (let i = 0; i < 5; i += 1) {
      expectCountryNotAllowed(
        await failure(t.client.register({ phoneNumber: PHONES.dave }, client)),
        'phone_number',
      )
      expectCountryNotAllowed(
        await failure(t.client.requestLoginCode({ phoneNumber: PHONES.carol }, client)),
        'phone_number',
      )
    }

    // The client's two sends and the two SMS of every budget are all still there.
    await t.client.register({ phoneNumber: PHONES.alice }, client)
    await t.client.register({ phoneNumber: PHONES.bob }, client)
    expect(t.sms.messages.map((m) => m.phone)).toEqual([PHONES.alice, PHONES.bob])
    const spent = await failure(t.client.register({ phoneNumber: WASHINGTON }, client))
    expect(spent.reason).toBe('CLIENT_SEND_LIMIT')
  })

  it('when a number is inside the allowed countries, then it signs up, logs in and moves as usual', async () => {
    const t = await startTestServer({
      config: fromEnv({ OTPAUTH_SMS_ALLOWED_COUNTRIES: 'us, gb' }),
    })

    const token = await session(t, PHONES.alice)
    await t.client.requestPhoneChange({ sessionToken: token, newPhoneNumber: LONDON })
    await t.client.changePhoneNumber({
      sessionToken: token,
      newPhoneNumber: LONDON,
      code: t.sms.lastCodeFor(LONDON, 'phone_change'),
    })
    await t.client.requestLoginCode({ phoneNumber: LONDON })
    await loginWithCode(t, LONDON, t.sms.lastCodeFor(LONDON, 'login'), ME)

    // GB is not GG: Guernsey numbers (+44 7911 …) stay outside.
    expectCountryNotAllowed(
      await failure(t.client.register({ phoneNumber: PHONES.carol })),
      'phone_number',
    )
  })

  it('when a test number is outside the allowed countries, then it is exempt', async () => {
    const t = await startTestServer({
      config: fromEnv({
        OTPAUTH_SMS_ALLOWED_COUNTRIES: 'US',
        OTPAUTH_TEST_NUMBERS: `${TEST_DE}=${TEST_DE_CODE}`,
      }),
    })

    await t.client.register({ phoneNumber: TEST_DE })
    await t.client.verifyOtp({ phoneNumber: TEST_DE, code: TEST_DE_CODE })
    await t.client.requestLoginCode({ phoneNumber: TEST_DE })
    await loginWithCode(t, TEST_DE, TEST_DE_CODE, ME)

    // Its neighbour is not a test number and stays outside.
    expectCountryNotAllowed(
      await failure(t.client.register({ phoneNumber: PHONES.dave })),
      'phone_number',
    )
    expect(t.sms.messages).toEqual([])
  })

  it('when RequestLoginCode asks for channel EMAIL, then the country is not checked: an account outside the allowed countries still gets its code by email', async () => {
    // The account and its address were made before Germany was taken off the list.
    const before = await startTestServer()
    const token = await session(before, PHONES.dave)
    await before.client.addEmail({ sessionToken: token, email: 'dave@example.com' })
    await before.client.verifyEmail({
      sessionToken: token,
      code: before.email.lastCodeFor('dave@example.com', 'email_verify'),
    })
    await before.app.stop()
    const t = await startTestServer({
      dir: before.dir,
      clock: before.clock,
      ...(before.config.databaseUrl === undefined
        ? {}
        : { databaseUrl: before.config.databaseUrl }),
      config: fromEnv({ OTPAUTH_SMS_ALLOWED_COUNTRIES: 'US' }),
    })
    t.clock.advance(30 * SECOND)

    const dave = await t.client.requestLoginCode({
      phoneNumber: PHONES.dave,
      channel: Channel.CHANNEL_EMAIL,
    })
    const unknown = await t.client.requestLoginCode({
      phoneNumber: PHONES.carol,
      channel: Channel.CHANNEL_EMAIL,
    })
    const bySms = await failure(t.client.requestLoginCode({ phoneNumber: PHONES.dave }))

    expect(unknown).toEqual(dave)
    expectCountryNotAllowed(bySms, 'phone_number')
    const code = t.email.lastCodeFor('dave@example.com', 'login')
    await loginWithCode(t, PHONES.dave, code, ME)
    expect(t.sms.messages).toEqual([])
  })
})

describe('Test numbers', () => {
  const TEST_NUMBERS = `${TEST_US}=${TEST_US_CODE}, ${TEST_DE}=${TEST_DE_CODE}`

  it('when a test number signs up, logs in or is moved to, then no SMS goes to it, its fixed code is the code every time, and the answers say the next code may come at once', async () => {
    const t = await startTestServer({ config: fromEnv({ OTPAUTH_TEST_NUMBERS: TEST_NUMBERS }) })

    const registered = await t.client.register({ phoneNumber: TEST_US, password: PASSWORD })
    expect(registered).toEqual({
      message: 'OTP sent to phone number',
      codeExpiresAt: new Date(t.clock.now() + 5 * 60 * SECOND),
      resendAvailableAt: new Date(t.clock.now()),
    })
    await t.client.verifyOtp({ phoneNumber: TEST_US, code: TEST_US_CODE })
    await loginWithPassword(t, TEST_US, PASSWORD, ME)
    for (let i = 0; i < 2; i += 1) {
      const asked = await t.client.requestLoginCode({ phoneNumber: TEST_US })
      expect(asked.resendAvailableAt).toEqual(new Date(t.clock.now()))
      await loginWithCode(t, TEST_US, TEST_US_CODE, ME)
    }
    // A phone change to a test number takes its fixed code too.
    const token = await session(t, PHONES.alice)
    await t.client.requestPhoneChange({ sessionToken: token, newPhoneNumber: TEST_DE })
    const moved = await t.client.changePhoneNumber({
      sessionToken: token,
      newPhoneNumber: TEST_DE,
      code: TEST_DE_CODE,
    })

    expect(moved).toEqual({ phoneNumber: TEST_DE })
    // Alice's sign-up code and the notice to her old number: nothing to the test numbers.
    expect(t.sms.messages.map((m) => [m.phone, m.purpose])).toEqual([
      [PHONES.alice, 'register'],
      [PHONES.alice, 'phone_change_notice'],
    ])
    // The fixed code is the only code: another is a wrong code.
    await t.client.requestLoginCode({ phoneNumber: TEST_DE })
    expectInvalidCredentials(
      await failure(loginWithCode(t, TEST_DE, wrong(TEST_DE_CODE), '198.51.100.61')),
    )
    expect((await loginWithCode(t, TEST_DE, TEST_DE_CODE, ME)).userId).toBe(
      (await t.client.validateSession({ sessionToken: token })).userId,
    )
  })

  it('when an account on a test number moves to another number, then the notice to the old number does not reach the SMS provider either', async () => {
    const t = await startTestServer({ config: fromEnv({ OTPAUTH_TEST_NUMBERS: TEST_NUMBERS }) })
    await t.client.register({ phoneNumber: TEST_US, password: PASSWORD })
    await t.client.verifyOtp({ phoneNumber: TEST_US, code: TEST_US_CODE })
    const token = (await loginWithPassword(t, TEST_US, PASSWORD, ME)).sessionToken

    await t.client.requestPhoneChange({ sessionToken: token, newPhoneNumber: PHONES.alice })
    await t.client.changePhoneNumber({
      sessionToken: token,
      newPhoneNumber: PHONES.alice,
      code: t.sms.lastCodeFor(PHONES.alice, 'phone_change'),
    })

    expect(t.sms.sentTo(PHONES.alice).map((m) => m.purpose)).toEqual(['phone_change'])
    expect(t.sms.sentTo(TEST_US)).toEqual([])
  })

  it('when a test number asks for codes many times in a row, then no send limit or budget stops it, and they are not used up for real numbers', async () => {
    const t = await startTestServer({
      config: {
        ...fromEnv({ OTPAUTH_TEST_NUMBERS: TEST_NUMBERS }),
        sendsPerClientPerHour: 2,
        smsBudgets: { globalPerDay: 2, perCountryPerDay: 2, perPrefixPerHour: 2, prefixDigits: 5 },
      },
    })
    const client = t.as('203.0.113.61')

    for (let i = 0; i < 10; i += 1) {
      await t.client.register({ phoneNumber: TEST_US }, client)
      await t.client.requestLoginCode({ phoneNumber: TEST_DE }, client)
    }

    // The client's two sends and the budgets' two SMS are untouched.
    await t.client.register({ phoneNumber: PHONES.alice }, client)
    await t.client.register({ phoneNumber: PHONES.bob }, client)
    expect(t.sms.messages.map((m) => m.phone)).toEqual([PHONES.alice, PHONES.bob])
    const budget = await failure(t.client.register({ phoneNumber: PHONES.dave }))
    expect(budget.reason).toBe('SMS_BUDGET_EXHAUSTED')
    await t.client.verifyOtp({ phoneNumber: TEST_US, code: TEST_US_CODE }, client)
  })

  it('when wrong codes are tried on a test number, then the fifth burns its code, and a new Register brings the fixed code back', async () => {
    const t = await startTestServer({ config: fromEnv({ OTPAUTH_TEST_NUMBERS: TEST_NUMBERS }) })
    await t.client.register({ phoneNumber: TEST_US })

    // From five clients, one try each: the code's own limit, not a client lockout.
    for (let i = 0; i < 5; i += 1) {
      expectInvalidCredentials(
        await failure(
          t.client.verifyOtp(
            { phoneNumber: TEST_US, code: wrong(TEST_US_CODE) },
            t.as(`203.0.113.${70 + i}`),
          ),
        ),
      )
    }
    const burned = await failure(
      t.client.verifyOtp({ phoneNumber: TEST_US, code: TEST_US_CODE }, t.as('203.0.113.80')),
    )

    expectInvalidCredentials(burned)
    await t.client.register({ phoneNumber: TEST_US })
    await t.client.verifyOtp({ phoneNumber: TEST_US, code: TEST_US_CODE }, t.as('203.0.113.81'))
  })

  it('when one client tries wrong codes on a test number, then it is locked out like any client, the fixed code included', async () => {
    const t = await startTestServer({ config: fromEnv({ OTPAUTH_TEST_NUMBERS: TEST_NUMBERS }) })
    await t.client.register({ phoneNumber: TEST_DE })
    await t.client.verifyOtp({ phoneNumber: TEST_DE, code: TEST_DE_CODE })
    await t.client.requestLoginCode({ phoneNumber: TEST_DE })
    const attacker = '203.0.113.90'

    for (let i = 0; i < 3; i += 1) {
      expectInvalidCredentials(
        await failure(loginWithCode(t, TEST_DE, wrong(TEST_DE_CODE), attacker)),
      )
    }
    const locked = await failure(loginWithCode(t, TEST_DE, TEST_DE_CODE, attacker))

    expect([locked.code, locked.reason]).toEqual([status.RESOURCE_EXHAUSTED, 'CLIENT_LOCKED_OUT'])
    await loginWithCode(t, TEST_DE, TEST_DE_CODE, '198.51.100.62')
  })

  it('when test numbers are configured, then start-up warns once, naming the numbers and never their codes', async () => {
    const t = await startTestServer({ config: fromEnv({ OTPAUTH_TEST_NUMBERS: TEST_NUMBERS }) })
    await t.client.register({ phoneNumber: TEST_US })
    await t.client.verifyOtp({ phoneNumber: TEST_US, code: TEST_US_CODE })
    await failure(t.client.verifyOtp({ phoneNumber: TEST_DE, code: TEST_DE_CODE }))

    const warnings = t.logs
      .entries()
      .filter((e) => e['level'] === 40 && JSON.stringify(e).includes('OTPAUTH_TEST_NUMBERS'))
    expect(warnings).toHaveLength(1)
    expect(warnings[0]?.['testNumbers']).toEqual([TEST_US, TEST_DE])
    expect(t.logs.text).not.toContain(TEST_US_CODE)
    expect(t.logs.text).not.toContain(TEST_DE_CODE)

    const plain = await startTestServer()
    expect(plain.logs.text).not.toContain('OTPAUTH_TEST_NUMBERS')
  })
})
