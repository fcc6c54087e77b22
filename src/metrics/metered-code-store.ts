import type { AnswerResult, CodeStore, NewChallenge } from '../auth/auth-store.js'
import type { CodePurpose } from '../auth/one-time-code.js'
import type { OtpAuthMetrics } from './otpauth-metrics.js'

/** MeteredCodeStore is a CodeStore that also counts answers and reports the cache's size. */
export class MeteredCodeStore implements CodeStore {
  readonly #codes: CodeStore
  readonly #metrics: OtpAuthMetrics

  readonly #regionOf: (phone: string) => string

  constructor(codes: CodeStore, metrics: OtpAuthMetrics, regionOf: (phone: string) => string) {
    this.#codes = codes
    this.#metrics = metrics
    this.#regionOf = regionOf
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
    // Sign-up and login codes are kept under the number; account-bound ones under an account id.
    const country = subject.startsWith('+') ? this.#regionOf(subject) : 'none'
    this.#metrics.codeAnswered(purpose, result.ok, country)
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
