import type { AnswerResult, CodeStore, NewChallenge } from '../auth/auth-store.js'
import type { CodePurpose } from '../auth/one-time-code.js'
import type { OtpAuthMetrics } from './otpauth-metrics.js'

/** MeteredCodeStore is a CodeStore that also counts answers and reports the cache's size. */
export class MeteredCodeStore implements CodeStore {
  readonly #codes: CodeStore
  readonly #metrics: OtpAuthMetrics

  constructor(codes: CodeStore, metrics: OtpAuthMetrics) {
    this.#codes = codes
    this.#metrics = metrics
    metrics.trackCacheSize(() => codes.size())
  }

  issue(challenge: NewChallenge): Promise<void> {
    return this.#codes.issue(challenge)
  }

  async answer(
    purpose: CodePurpose,
    subject: string,
    candidates: readonly Buffer[],
    now: number,
  ): Promise<AnswerResult> {
    const result = await this.#codes.answer(purpose, subject, candidates, now)
    this.#metrics.codeAnswered(purpose, result.ok)
    return result
  }

  pendingPassword(phone: string, clientKey: string, now: number): Promise<string | undefined> {
    return this.#codes.pendingPassword(phone, clientKey, now)
  }

  discard(challenges: readonly { purpose: CodePurpose; subject: string }[]): Promise<void> {
    return this.#codes.discard(challenges)
  }

  size(): number | undefined {
    return this.#codes.size()
  }
}
