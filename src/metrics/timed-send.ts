import { failureKind, type SmsFailureKind } from '../auth/sms-sender.js'

/** How a send ended, as the metrics label it. */
export type SendOutcome = 'sent' | SmsFailureKind

/**
 * timedSend runs one send and reports its outcome and seconds, whether it resolved or threw (and
 * rethrows): the one measurement behind the SMS and email senders' metrics.
 */
export async function timedSend(
  send: () => Promise<void>,
  report: (outcome: SendOutcome, seconds: number) => void,
): Promise<void> {
  const started = performance.now()
  let outcome: SendOutcome = 'sent'
  try {
    await send()
  } catch (error) {
    outcome = failureKind(error)
    throw error
  } finally {
    report(outcome, (performance.now() - started) / 1000)
  }
}
