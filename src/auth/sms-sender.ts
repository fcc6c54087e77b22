import type { CodePurpose } from './one-time-code.js'

/** SmsMessage is one code on its way to a phone. */
export interface SmsMessage {
  /** E.164. */
  phone: string
  code: string
  purpose: CodePurpose
  /** The text the user reads. */
  text: string
}

/** SmsSender delivers codes. A rejected promise means the message was not accepted for delivery. */
export interface SmsSender {
  send(message: SmsMessage): Promise<void>
}
