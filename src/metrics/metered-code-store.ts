import {
  ChallengeCache,
  type AnswerResult,
  type ChallengeCacheOptions,
} from '../auth/challenge-cache.js'
import type { CodePurpose } from '../auth/one-time-code.js'
import type { OtpAuthMetrics } from './otpauth-metrics.js'

/** MeteredChallengeCache is the ChallengeCache that also counts answers and reports its size. */
export class MeteredChallengeCache extends ChallengeCache {
  readonly #metrics: OtpAuthMetrics

  constructor(metrics: OtpAuthMetrics, options: ChallengeCacheOptions) {
    super(options)
    this.#metrics = metrics
    metrics.trackCacheSize(() => this.size)
  }

  override answer(purpose: CodePurpose, phone: string, code: string): AnswerResult {
    const result = super.answer(purpose, phone, code)
    this.#metrics.codeAnswered(purpose, result.ok)
    return result
  }
}
