import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'
import { OtpAuthService } from '../../gen/otpauth/v1/otpauth.js'
import type { RpcObserver } from '../rpc/rpc-observer.js'
import type { SendOutcome } from './timed-send.js'

const SERVICE = 'otpauth.v1.OtpAuth'

/** One method's series, resolved once (see OtpAuthMetrics.#rpc). */
interface RpcSeries {
  started: { inc(): void }
  handling: { observe(value: number): void }
  handled: Map<string, { inc(): void }>
}
// Every method of the service, from the generated definition, so a new RPC is counted from zero.
const METHODS = Object.values(OtpAuthService).map((m) => m.path.slice(m.path.lastIndexOf('/') + 1))
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

export type CodePurposeLabel =
  'register' | 'login' | 'phone_change' | 'email_verify' | 'phone_change_notice'

export interface MetricsSources {
  /** Read at scrape time: clients locked out now. */
  activeLockouts: () => Promise<number>
}

/**
 * OtpAuthMetrics owns one prom-client Registry (never the global one): per-RPC counters and
 * latency in the names go-grpc-prometheus and grpc-java use, plus the service's own counters.
 */
export class OtpAuthMetrics implements RpcObserver {
  readonly registry = new Registry()
  readonly #started: Counter<'grpc_type' | 'grpc_service' | 'grpc_method'>
  readonly #handled: Counter<'grpc_type' | 'grpc_service' | 'grpc_method' | 'grpc_code'>
  readonly #handling: Histogram<'grpc_type' | 'grpc_service' | 'grpc_method'>
  readonly #codesSent: Counter<'purpose' | 'result' | 'country'>
  readonly #codesVerified: Counter<'purpose' | 'result' | 'country'>
  readonly #budgetRefusals: Counter<'budget' | 'country'>
  readonly #emailsSent: Counter<'purpose' | 'result'>
  readonly #emailSeconds: Histogram<'purpose' | 'result'>
  readonly #smsSeconds: Histogram<'purpose' | 'result'>
  readonly #smsFailures: Counter<'purpose'>
  // Keyed by the closed sets of method and status names: bounded.
  readonly #series = new Map<string, RpcSeries>()
  #cacheSize: () => number | undefined = () => 0

  constructor(sources: MetricsSources) {
    const registers = [this.registry]
    const rpcLabels = ['grpc_type', 'grpc_service', 'grpc_method'] as const
    this.#started = new Counter({
      name: 'grpc_server_started_total',
      help: 'RPCs started on the server.',
      labelNames: rpcLabels,
      registers,
    })
    this.#handled = new Counter({
      name: 'grpc_server_handled_total',
      help: 'RPCs completed on the server, by status code.',
      labelNames: [...rpcLabels, 'grpc_code'],
      registers,
    })
    this.#handling = new Histogram({
      name: 'grpc_server_handling_seconds',
      help: 'Time from receiving an RPC to sending its status, in seconds.',
      labelNames: rpcLabels,
      buckets: LATENCY_BUCKETS,
      registers,
    })
    this.#codesSent = new Counter({
      name: 'otpauth_codes_sent_total',
      help:
        'SMS handed to the provider, by purpose, result (sent; permanent, transient or unknown ' +
        'failure) and destination country (ISO 3166; 001 non-geographic).',
      labelNames: ['purpose', 'result', 'country'],
      registers,
    })
    this.#codesVerified = new Counter({
      name: 'otpauth_codes_verified_total',
      help:
        'One-time codes checked, by purpose, result (accepted, rejected) and country of the ' +
        'number (none for codes bound to an account: phone and email changes).',
      labelNames: ['purpose', 'result', 'country'],
      registers,
    })
    this.#emailsSent = new Counter({
      name: 'otpauth_emails_sent_total',
      help:
        'Emails handed to the mail server, by purpose and result (sent; permanent, transient or ' +
        'unknown failure).',
      labelNames: ['purpose', 'result'],
      registers,
    })
    this.#emailSeconds = new Histogram({
      name: 'otpauth_email_send_seconds',
      help: 'Time the email sender took to hand a message over (or fail), in seconds.',
      labelNames: ['purpose', 'result'],
      buckets: LATENCY_BUCKETS,
      registers,
    })
    this.#budgetRefusals = new Counter({
      name: 'otpauth_sms_budget_refusals_total',
      help: 'Sends refused by an SMS budget, by budget (global, country, prefix) and country.',
      labelNames: ['budget', 'country'],
      registers,
    })
    this.#smsSeconds = new Histogram({
      name: 'otpauth_sms_send_seconds',
      help: 'Time the SMS sender took to accept (or fail) a message, in seconds.',
      labelNames: ['purpose', 'result'],
      buckets: LATENCY_BUCKETS,
      registers,
    })
    this.#smsFailures = new Counter({
      name: 'otpauth_sms_failures_total',
      help: 'SMS sends that failed (non-2xx, timeout, provider error).',
      labelNames: ['purpose'],
      registers,
    })
    new Gauge({
      name: 'otpauth_active_lockouts',
      help: 'Client addresses locked out of VerifyOtp and Login right now (read from the database).',
      registers,
      async collect() {
        try {
          this.set(await sources.activeLockouts())
        } catch {
          // The database is down: the gauge keeps its last value; health says the rest.
        }
      },
    })
    const cacheSize = (): number | undefined => this.#cacheSize()
    new Gauge({
      name: 'otpauth_challenge_cache_entries',
      help: 'Challenges (hashed codes) held in the in-memory cache, expired ones included until evicted.',
      registers,
      collect() {
        this.set(cacheSize() ?? 0)
      },
    })
    collectDefaultMetrics({ register: this.registry })
    for (const method of METHODS) {
      this.#started.inc({ grpc_type: 'unary', grpc_service: SERVICE, grpc_method: method }, 0)
    }
  }

  started(method: string): void {
    this.#rpc(method).started.inc()
  }

  finished(method: string, status: string, seconds: number): void {
    const rpc = this.#rpc(method)
    let handled = rpc.handled.get(status)
    if (handled === undefined) {
      handled = this.#handled.labels('unary', SERVICE, method, status)
      rpc.handled.set(status, handled)
    }
    handled.inc()
    rpc.handling.observe(seconds)
  }

  /**
   * #rpc is one method's label children, made once: `inc(labels)` would validate and hash the
   * label object on every call (a few µs of a call that costs ~50 µs in all).
   */
  #rpc(method: string): RpcSeries {
    let series = this.#series.get(method)
    if (series === undefined) {
      series = {
        started: this.#started.labels('unary', SERVICE, method),
        handling: this.#handling.labels('unary', SERVICE, method),
        handled: new Map(),
      }
      this.#series.set(method, series)
    }
    return series
  }

  smsSent(purpose: CodePurposeLabel, result: SendOutcome, seconds: number, country: string): void {
    this.#codesSent.inc({ purpose, result, country })
    this.#smsSeconds.observe({ purpose, result: result === 'sent' ? 'sent' : 'failed' }, seconds)
    if (result !== 'sent') this.#smsFailures.inc({ purpose })
  }

  codeAnswered(purpose: CodePurposeLabel, accepted: boolean, country: string): void {
    this.#codesVerified.inc({ purpose, result: accepted ? 'accepted' : 'rejected', country })
  }

  emailSent(purpose: string, result: SendOutcome, seconds: number): void {
    this.#emailsSent.inc({ purpose, result })
    this.#emailSeconds.observe({ purpose, result: result === 'sent' ? 'sent' : 'failed' }, seconds)
  }

  budgetRefused(budget: string, country: string): void {
    this.#budgetRefusals.inc({ budget, country })
  }

  /** trackCacheSize names the function the cache-size gauge reads at scrape time. */
  trackCacheSize(size: () => number | undefined): void {
    this.#cacheSize = size
  }
}
