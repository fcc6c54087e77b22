/**
 * What users read (issue 10, Messages): per-purpose templates with {code}, {minutes} and {app},
 * OTPAUTH_APP_NAME, the WebOTP line for SMS, and the email subject, text and HTML. Configured the
 * way an operator does it, through the environment (loadConfig).
 */
import { describe, expect, it } from 'vitest'
import { Channel } from '../src/client/otpauth-client.js'
import { ConfigError, loadConfig, type Config } from '../src/config.js'
import {
  loginWithPassword,
  PHONES,
  signUpVerified,
  startTestServer,
  type TestServer,
} from './harness.js'

const PASSWORD = 'messages password'
const ME = '198.51.100.70'

/** The message settings (and code lifetime) as the environment gives them. */
function fromEnv(env: Record<string, string>): Partial<Config> {
  const { messages, codeTtlSeconds } = loadConfig(env)
  return { messages, codeTtlSeconds }
}

/** session signs a number up with a password and logs in: a fresh, privileged session. */
async function session(t: TestServer, phone: string): Promise<string> {
  await signUpVerified(t, phone, PASSWORD)
  return (await loginWithPassword(t, phone, PASSWORD, ME)).sessionToken
}

/** lastSms is the newest SMS to the number for the purpose; fails the test if there is none. */
function lastSms(t: TestServer, phone: string, purpose: string) {
  const found = t.sms.sentTo(phone).filter((m) => m.purpose === purpose)
  const last = found.at(-1)
  expect(last, `an SMS (${purpose}) to ${phone}`).toBeDefined()
  return last as NonNullable<typeof last>
}

function lastEmail(t: TestServer, address: string, purpose: string) {
  const found = t.email.sentTo(address).filter((m) => m.purpose === purpose)
  const last = found.at(-1)
  expect(last, `an email (${purpose}) to ${address}`).toBeDefined()
  return last as NonNullable<typeof last>
}

/** htmlText is what a mail reader shows of an HTML body: tags dropped, entities decoded. */
function htmlText(html: string): string {
  const named: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" }
  return html
    .replace(/<[^>]*>/g, '')
    .replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (entity, name: string) => {
      if (name.startsWith('#x') || name.startsWith('#X')) {
        return String.fromCodePoint(parseInt(name.slice(2), 16))
      }
      if (name.startsWith('#')) return String.fromCodePoint(Number(name.slice(1)))
      return named[name.toLowerCase()] ?? entity
    })
}

/** count is how many times `part` occurs in `text`. */
function count(text: string, part: string): number {
  return text.split(part).length - 1
}

/** configError is the ConfigError loadConfig throws for the environment; fails the test if none. */
function configError(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env)
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError)
    return error as ConfigError
  }
  throw new Error('expected loadConfig to refuse the environment')
}

describe('Messages', () => {
  it('when templates and OTPAUTH_APP_NAME are set, then each SMS text is its template with {code}, {minutes} and {app} filled in', async () => {
    const t = await startTestServer({
      config: fromEnv({
        OTPAUTH_APP_NAME: 'Acme Bank',
        OTPAUTH_CODE_TTL_SECONDS: '600',
        OTPAUTH_TEMPLATE_REGISTER: 'Welcome to {app}! Your code: {code} ({minutes} min)',
        OTPAUTH_TEMPLATE_LOGIN: '{code} is your {app} login code; {minutes} minutes. {app}',
        OTPAUTH_TEMPLATE_PHONE_CHANGE: '{app} number change: {code}',
      }),
    })

    const token = await session(t, PHONES.alice)
    await t.client.requestPhoneChange({ sessionToken: token, newPhoneNumber: PHONES.bob })
    const change = lastSms(t, PHONES.bob, 'phone_change')
    await t.client.changePhoneNumber({
      sessionToken: token,
      newPhoneNumber: PHONES.bob,
      code: change.code,
    })
    await t.client.requestLoginCode({ phoneNumber: PHONES.bob })

    const register = lastSms(t, PHONES.alice, 'register')
    expect(register.text).toBe(`Welcome to Acme Bank! Your code: ${register.code} (10 min)`)
    expect(register.validForSeconds).toBe(600)
    const login = lastSms(t, PHONES.bob, 'login')
    expect(login.text).toBe(`${login.code} is your Acme Bank login code; 10 minutes. Acme Bank`)
    expect(change.text).toBe(`Acme Bank number change: ${change.code}`)
    // The notice carries no code, but the app's name.
    const notice = lastSms(t, PHONES.alice, 'phone_change_notice')
    expect(notice.text).toMatch(/^Acme Bank: /)
    expect(notice.text).not.toMatch(/\d{6}/)
  })

  it('when nothing is configured, then the default texts name OtpAuth and the 5-minute lifetime', async () => {
    const t = await startTestServer()

    await t.client.register({ phoneNumber: PHONES.alice })

    const sms = lastSms(t, PHONES.alice, 'register')
    expect(sms.text).toBe(
      `OtpAuth: your sign-up code is ${sms.code}. It expires in 5 minutes. Do not share it.`,
    )
  })

  it('when OTPAUTH_WEBOTP_DOMAIN is set, then every code SMS ends with the line "@domain #code", and emails and notices do not', async () => {
    const t = await startTestServer({
      config: fromEnv({
        OTPAUTH_APP_NAME: 'Acme',
        OTPAUTH_WEBOTP_DOMAIN: 'Login.Example.com',
        OTPAUTH_TEMPLATE_REGISTER: '{app} code {code}',
      }),
    })

    const token = await session(t, PHONES.alice)
    await t.client.requestPhoneChange({ sessionToken: token, newPhoneNumber: PHONES.bob })
    await t.client.changePhoneNumber({
      sessionToken: token,
      newPhoneNumber: PHONES.bob,
      code: lastSms(t, PHONES.bob, 'phone_change').code,
    })
    await t.client.requestLoginCode({ phoneNumber: PHONES.bob })
    await t.client.addEmail({ sessionToken: token, email: 'alice@example.com' })

    const register = lastSms(t, PHONES.alice, 'register')
    expect(register.text).toBe(`Acme code ${register.code}\n\n@login.example.com #${register.code}`)
    for (const sms of [lastSms(t, PHONES.bob, 'phone_change'), lastSms(t, PHONES.bob, 'login')]) {
      const lines = sms.text.split('\n')
      expect(lines.at(-1)).toBe(`@login.example.com #${sms.code}`)
      expect(lines.at(-2)).toBe('')
      expect(count(sms.text, '@login.example.com')).toBe(1)
    }
    expect(lastSms(t, PHONES.alice, 'phone_change_notice').text).not.toContain('@login')
    const email = lastEmail(t, 'alice@example.com', 'email_verify')
    expect(email.text).not.toContain('@login.example.com')
    expect(email.html).not.toContain('@login.example.com')
  })

  it('when OTPAUTH_WEBOTP_DOMAIN is not set, then no SMS has a WebOTP line', async () => {
    const t = await startTestServer({ config: fromEnv({ OTPAUTH_APP_NAME: 'Acme' }) })

    await signUpVerified(t, PHONES.alice)
    await t.client.requestLoginCode({ phoneNumber: PHONES.alice })

    expect(t.sms.messages).toHaveLength(2)
    for (const sms of t.sms.messages) {
      expect(sms.text).not.toContain('\n')
      expect(sms.text).not.toContain(`#${sms.code}`)
      expect(sms.text).not.toMatch(/^@/m)
    }
  })

  it('when a code goes by email, then the subject, the text and the HTML carry it, the HTML escaped with the code in <strong>', async () => {
    const t = await startTestServer({
      config: fromEnv({
        OTPAUTH_APP_NAME: 'Acme & <Sons>',
        OTPAUTH_TEMPLATE_EMAIL_VERIFY: 'Confirm "{app}": {code} (valid {minutes} min)',
        OTPAUTH_TEMPLATE_LOGIN: '{app} login code {code}',
        OTPAUTH_WEBOTP_DOMAIN: 'example.com',
      }),
    })
    const token = await session(t, PHONES.alice)

    await t.client.addEmail({ sessionToken: token, email: 'alice@example.com' })
    const verify = lastEmail(t, 'alice@example.com', 'email_verify')
    await t.client.verifyEmail({ sessionToken: token, code: verify.code })
    t.clock.advance(30_000)
    await t.client.requestLoginCode({ phoneNumber: PHONES.alice, channel: Channel.CHANNEL_EMAIL })
    const login = lastEmail(t, 'alice@example.com', 'login')

    expect(verify.to).toBe('alice@example.com')
    expect(verify.subject).toBe(`${verify.code} is your Acme & <Sons> code`)
    expect(verify.text).toBe(`Confirm "Acme & <Sons>": ${verify.code} (valid 5 min)`)
    expect(verify.html).toContain(`<strong>${verify.code}</strong>`)
    expect(verify.html).not.toContain('<Sons>')
    expect(verify.html).not.toContain('"Acme')
    expect(htmlText(verify.html)).toBe(verify.text)
    expect(login.subject).toBe(`${login.code} is your Acme & <Sons> code`)
    expect(login.text).toBe(`Acme & <Sons> login code ${login.code}`)
    expect(login.html).toContain(`<strong>${login.code}</strong>`)
    expect(htmlText(login.html)).toBe(login.text)
    expect(login.code).toMatch(/^\d{6}$/)
  })

  it('when the app name holds {code} or {minutes}, then they are printed as they are, not filled in a second time', async () => {
    const t = await startTestServer({
      config: fromEnv({
        OTPAUTH_APP_NAME: 'Shop {code} {minutes} {app}',
        OTPAUTH_TEMPLATE_REGISTER: '{app}: {code}',
        OTPAUTH_TEMPLATE_EMAIL_VERIFY: '{app} says {code}',
        OTPAUTH_WEBOTP_DOMAIN: 'shop.example',
      }),
    })
    const token = await session(t, PHONES.alice)
    await t.client.addEmail({ sessionToken: token, email: 'alice@example.com' })

    const sms = lastSms(t, PHONES.alice, 'register')
    expect(sms.text).toBe(`Shop {code} {minutes} {app}: ${sms.code}\n\n@shop.example #${sms.code}`)
    const email = lastEmail(t, 'alice@example.com', 'email_verify')
    expect(email.subject).toBe(`${email.code} is your Shop {code} {minutes} {app} code`)
    expect(email.text).toBe(`Shop {code} {minutes} {app} says ${email.code}`)
    expect(count(email.html, email.code)).toBe(1)
    expect(htmlText(email.html)).toBe(email.text)
  })

  it('when a template has no {code}, then loadConfig refuses it with a ConfigError naming the variable', () => {
    for (const name of [
      'OTPAUTH_TEMPLATE_REGISTER',
      'OTPAUTH_TEMPLATE_LOGIN',
      'OTPAUTH_TEMPLATE_PHONE_CHANGE',
      'OTPAUTH_TEMPLATE_EMAIL_VERIFY',
    ]) {
      const err = configError({ [name]: 'Your {app} code expires in {minutes} minutes' })
      expect(err.problems, name).toHaveLength(1)
      expect(err.problems[0], name).toContain(name)
      expect(err.message, name).toContain(name)
    }
    // Every bad variable at once, each by name; a {code} is what makes a template acceptable.
    const both = configError({
      OTPAUTH_TEMPLATE_LOGIN: 'no code here',
      OTPAUTH_TEMPLATE_REGISTER: 'x'.repeat(301) + '{code}',
      OTPAUTH_TEMPLATE_PHONE_CHANGE: 'fine: {code}',
    })
    expect(both.problems).toHaveLength(2)
    expect(both.message).toContain('OTPAUTH_TEMPLATE_LOGIN')
    expect(both.message).toContain('OTPAUTH_TEMPLATE_REGISTER')
    expect(loadConfig({ OTPAUTH_TEMPLATE_LOGIN: '{code}' }).messages.templates.login).toBe('{code}')
  })

  it('when the app name or the WebOTP domain is malformed, then loadConfig refuses it by name', () => {
    expect(configError({ OTPAUTH_APP_NAME: 'A'.repeat(41) }).message).toContain('OTPAUTH_APP_NAME')
    expect(configError({ OTPAUTH_APP_NAME: 'two\nlines' }).message).toContain('OTPAUTH_APP_NAME')
    for (const domain of ['https://example.com', 'example', 'exa mple.com']) {
      expect(configError({ OTPAUTH_WEBOTP_DOMAIN: domain }).message, domain).toContain(
        'OTPAUTH_WEBOTP_DOMAIN',
      )
    }
  })
})
