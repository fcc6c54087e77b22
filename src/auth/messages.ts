import type { CodePurpose } from './one-time-code.js'

/** What a code message says, by purpose: templates with {code}, {minutes} and {app}. */
export type MessageTemplates = Readonly<Record<CodePurpose, string>>

export const DEFAULT_TEMPLATES: MessageTemplates = {
  register: '{app}: your sign-up code is {code}. It expires in {minutes} minutes. Do not share it.',
  login: '{app}: your login code is {code}. It expires in {minutes} minutes. Do not share it.',
  phone_change:
    '{app}: your code to move your account to this number is {code}. It expires in {minutes} minutes. Do not share it.',
  email_verify:
    '{app}: your code to add this email address is {code}. It expires in {minutes} minutes. Do not share it.',
}

export interface MessagesOptions {
  appName: string
  templates: MessageTemplates
  /** Adds the WebOTP line ("@domain #code") to SMS codes, so browsers can offer to fill them in. */
  webOtpDomain: string | undefined
}

/** Messages renders what users read. The code is the only variable part a caller influences. */
export class Messages {
  readonly #options: MessagesOptions

  constructor(options: MessagesOptions) {
    this.#options = options
  }

  get appName(): string {
    return this.#options.appName
  }

  /** code renders a code message from its template; for SMS, with the WebOTP line last. */
  code(
    purpose: keyof MessageTemplates,
    code: string,
    minutes: number,
    channel: 'sms' | 'email',
  ): string {
    const text = this.#options.templates[purpose]
      // One pass, so a {code} inside the app name is not expanded again.
      .replace(/\{(code|minutes|app)\}/g, (_, name: string) =>
        name === 'code' ? code : name === 'minutes' ? String(minutes) : this.#options.appName,
      )
    const domain = this.#options.webOtpDomain
    // WebOTP: the last line is "@host #code" (https://wicg.github.io/sms-one-time-codes/).
    return channel === 'sms' && domain !== undefined ? `${text}\n\n@${domain} #${code}` : text
  }
}
