import type { CodePurpose } from './one-time-code.js'

/** What an SMS is for: a code, or a notice that carries none. */
export type SmsPurpose = CodePurpose | 'phone_change_notice'

/** SmsMessage is one code (or notice) on its way to a phone. */
export interface SmsMessage {
  /** E.164. */
  phone: string
  /** The code in the text; '' for a notice. */
  code: string
  purpose: SmsPurpose
  /** The text the user reads. */
  text: string
}

/** SmsSender delivers codes and notices. A rejected promise means the message was not accepted for delivery. */
export interface SmsSender {
  send(message: SmsMessage): Promise<void>
}
