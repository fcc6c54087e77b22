import { parentPort, workerData } from 'node:worker_threads'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  LoginRequest,
  LoginResponse,
  LogoutRequest,
  RegisterRequest,
  Channel,
  RequestLoginCodeRequest,
  ValidateSessionRequest,
  VerifyOtpRequest,
} from '../gen/otpauth/v1/otpauth.js'
import { GrpcConnection } from './grpc-call.js'
import { RawH2Connection } from './raw-h2.js'
import { phoneOf, takeCode } from './phones.js'

export type Scenario =
  | 'register'
  | 'verify'
  | 'register-verify'
  | 'request-code'
  | 'login-code'
  | 'request-login'
  | 'validate'
  | 'login-password'
  | 'mixed'

/** The RPCs as the bench tells them apart (Login by credential). */
export const RPCS = [
  'Register',
  'VerifyOtp',
  'RequestLoginCode',
  'Login(code)',
  'Login(password)',
  'ValidateSession',
  'Logout',
] as const
const REGISTER = 0
const VERIFY = 1
const REQUEST_CODE = 2
const LOGIN_CODE = 3
const LOGIN_PASSWORD = 4
const VALIDATE = 5
const LOGOUT = 6
const PATHS = [
  '/otpauth.v1.OtpAuth/Register',
  '/otpauth.v1.OtpAuth/VerifyOtp',
  '/otpauth.v1.OtpAuth/RequestLoginCode',
  '/otpauth.v1.OtpAuth/Login',
  '/otpauth.v1.OtpAuth/Login',
  '/otpauth.v1.OtpAuth/ValidateSession',
  '/otpauth.v1.OtpAuth/Logout',
]

export interface WorkerSpec {
  id: number
  authority: string
  scenario: Scenario
  concurrency: number
  connections: number
  /** Absolute start time (performance.timeOrigin + performance.now()), shared by all workers. */
  startAt: number
  warmupMs: number
  durationMs: number
  /** Against the ceiling server: codes are not looked up and pools are never empty. */
  ceiling: boolean
  codes: SharedArrayBuffer
  /** Fresh number indexes next, next + stride, … below end, that no earlier call used. */
  fresh: { next: number; stride: number; end: number }
  /** Number indexes to consume, one per iteration (verified numbers, or numbers with a code). */
  pool: number[]
  tokens: string[]
  passwordUsers: number[]
  password: string
  /** Register with the password (to make password users), or without one. */
  registerPassword: boolean
  /** Calls per second for the whole worker; closed loop when undefined. */
  ratePerSecond: number | undefined
  /** How many new session tokens to hand back. */
  keepTokens: number
  /** raw: the bench's own HTTP/2 framing; node-http2: node:http2 (costs the load more CPU). */
  client: 'raw' | 'node-http2'
  /** Distinct x-forwarded-for addresses this worker cycles through (0: send none). */
  clientAddresses: number
}

export interface WorkerResult {
  /** Calls that ended after the warm-up: end time (absolute ms), latency (µs), RPC, status. */
  end: Float64Array
  latencyUs: Float32Array
  rpc: Uint8Array
  status: Int8Array
  count: number
  /** When the first slot found its pool empty (absolute ms), or null. */
  exhaustedAt: number | null
  /** Numbers that reached the next state (registered, verified, code sent). */
  produced: number[]
  tokens: string[]
  /** A code the SMS sink never saw: a finding, like any non-OK status. */
  missingCodes: number
  /** The first fresh index this worker did not use. */
  freshNext: number
}

const now = (): number => performance.timeOrigin + performance.now()

class Samples {
  end = new Float64Array(1 << 14)
  latencyUs = new Float32Array(1 << 14)
  rpc = new Uint8Array(1 << 14)
  status = new Int8Array(1 << 14)
  count = 0

  add(end: number, latencyMs: number, rpc: number, status: number): void {
    if (this.count === this.end.length) {
      const grow = <T extends Float64Array | Float32Array | Uint8Array | Int8Array>(
        a: T,
        make: (n: number) => T,
      ): T => {
        const b = make(a.length * 2)
        b.set(a)
        return b
      }
      this.end = grow(this.end, (n) => new Float64Array(n))
      this.latencyUs = grow(this.latencyUs, (n) => new Float32Array(n))
      this.rpc = grow(this.rpc, (n) => new Uint8Array(n))
      this.status = grow(this.status, (n) => new Int8Array(n))
    }
    const i = this.count++
    this.end[i] = end
    this.latencyUs[i] = latencyMs * 1000
    this.rpc[i] = rpc
    this.status[i] = status
  }
}

async function run(spec: WorkerSpec): Promise<WorkerResult> {
  const connections = Array.from({ length: spec.connections }, () =>
    spec.client === 'raw'
      ? new RawH2Connection(spec.authority)
      : new GrpcConnection(spec.authority),
  )
  const codes = new Int32Array(spec.codes)
  const samples = new Samples()
  const warmEnd = spec.startAt + spec.warmupMs
  const endAt = warmEnd + spec.durationMs
  const produced: number[] = []
  const tokens: string[] = []
  const pool = spec.pool
  let exhaustedAt: number | null = null
  let missingCodes = 0
  let tokenCursor = spec.id * 7919
  let passwordCursor = spec.id
  let seed = (spec.id + 1) * 2654435761
  const random = (): number => {
    seed ^= seed << 13
    seed ^= seed >>> 17
    seed ^= seed << 5
    return (seed >>> 0) / 4294967296
  }
  const addresses = Array.from(
    { length: spec.clientAddresses },
    (_, n) => `10.${spec.id}.${(n >> 8) & 255}.${n & 255}`,
  )
  let addressCursor = 0
  let callCount = 0
  const cannedToken = 'A'.repeat(43)

  const call = async (
    rpc: number,
    message: Uint8Array,
    wantMessage = false,
    index?: number,
  ): Promise<{ ok: boolean; message: Buffer | undefined }> => {
    const connection = connections[callCount++ % connections.length]
    if (connection === undefined) throw new Error('no connection')
    // One number always calls from the same client address (its owner's phone), as the service
    // expects: a password given at Register is kept only if VerifyOtp comes from the same client.
    const xff =
      addresses.length === 0 ? undefined : addresses[(index ?? addressCursor++) % addresses.length]
    const started = now()
    const result = await connection.call(PATHS[rpc] ?? '', message, xff, wantMessage)
    const ended = now()
    if (ended >= warmEnd) samples.add(ended, ended - started, rpc, result.status)
    return { ok: result.status === 0, message: result.message }
  }

  const fresh = (): number | undefined => {
    const index = spec.fresh.next
    if (index >= spec.fresh.end) return undefined
    spec.fresh.next += spec.fresh.stride
    return index
  }
  const fromPool = (): number | undefined => (spec.ceiling ? fresh() : pool.pop())
  const codeFor = (index: number): string | undefined => {
    if (spec.ceiling) return '123456'
    const code = takeCode(codes, index)
    if (code === undefined) missingCodes += 1
    return code
  }
  const keepToken = (message: Buffer | undefined): string | undefined => {
    if (message === undefined) return undefined
    const token = LoginResponse.decode(message).sessionToken
    if (tokens.length < spec.keepTokens) tokens.push(token)
    return token
  }
  const nextToken = (): string => {
    if (spec.ceiling || spec.tokens.length === 0) return cannedToken
    return spec.tokens[tokenCursor++ % spec.tokens.length] ?? cannedToken
  }

  const register = async (index: number): Promise<boolean> => {
    const request = RegisterRequest.encode({
      phoneNumber: phoneOf(index),
      password: spec.registerPassword ? spec.password : undefined,
    }).finish()
    return (await call(REGISTER, request, false, index)).ok
  }
  const verify = async (index: number): Promise<boolean> => {
    const code = codeFor(index)
    if (code === undefined) return false
    const request = VerifyOtpRequest.encode({ phoneNumber: phoneOf(index), code }).finish()
    return (await call(VERIFY, request, false, index)).ok
  }
  const requestCode = async (index: number): Promise<boolean> => {
    const request = RequestLoginCodeRequest.encode({
      phoneNumber: phoneOf(index),
      channel: Channel.CHANNEL_SMS,
    }).finish()
    return (await call(REQUEST_CODE, request, false, index)).ok
  }
  const loginWithCode = async (index: number): Promise<string | undefined> => {
    const code = codeFor(index)
    if (code === undefined) return undefined
    const request = LoginRequest.encode({
      phoneNumber: phoneOf(index),
      credential: { $case: 'code', value: code },
    }).finish()
    const result = await call(LOGIN_CODE, request, true, index)
    return result.ok ? keepToken(result.message) : undefined
  }
  const validate = async (token: string): Promise<void> => {
    await call(VALIDATE, ValidateSessionRequest.encode({ sessionToken: token }).finish())
  }
  const validateRequests = spec.tokens.map((t) =>
    ValidateSessionRequest.encode({ sessionToken: t }).finish(),
  )
  const passwordUsers = spec.passwordUsers.length > 0 ? spec.passwordUsers : [0]
  const loginRequests = passwordUsers.map((index) =>
    LoginRequest.encode({
      phoneNumber: phoneOf(index),
      credential: { $case: 'password', value: spec.password },
    }).finish(),
  )

  // One iteration of the scenario; false when the pool ran dry.
  const iterate = async (): Promise<boolean> => {
    switch (spec.scenario) {
      case 'register': {
        const index = fresh()
        if (index === undefined) return false
        if (await register(index)) produced.push(index)
        return true
      }
      case 'verify': {
        const index = fromPool()
        if (index === undefined) return false
        if (await verify(index)) produced.push(index)
        return true
      }
      case 'register-verify': {
        const index = fresh()
        if (index === undefined) return false
        if ((await register(index)) && (await verify(index))) produced.push(index)
        return true
      }
      case 'request-code': {
        const index = fromPool()
        if (index === undefined) return false
        if (await requestCode(index)) produced.push(index)
        return true
      }
      case 'login-code': {
        const index = fromPool()
        if (index === undefined) return false
        await loginWithCode(index)
        return true
      }
      case 'request-login': {
        const index = fromPool()
        if (index === undefined) return false
        if (await requestCode(index)) await loginWithCode(index)
        return true
      }
      case 'validate': {
        if (spec.ceiling || validateRequests.length === 0) await validate(nextToken())
        else {
          const request = validateRequests[tokenCursor++ % validateRequests.length]
          if (request !== undefined) await call(VALIDATE, request)
        }
        return true
      }
      case 'login-password': {
        const request = loginRequests[passwordCursor++ % Math.max(1, loginRequests.length)]
        if (request === undefined) return false
        const result = await call(LOGIN_PASSWORD, request, true)
        if (result.ok) keepToken(result.message)
        return true
      }
      case 'mixed': {
        // 70 % ValidateSession, 15 % sign-up (Register + VerifyOtp), 15 % code login + Logout.
        const r = random()
        if (r < 0.7) {
          await validate(nextToken())
          return true
        }
        if (r < 0.85 || (!spec.ceiling && pool.length === 0)) {
          const index = fresh()
          if (index === undefined) return false
          if ((await register(index)) && (await verify(index))) pool.push(index)
          return true
        }
        const index = fromPool()
        if (index === undefined) return false
        if (await requestCode(index)) {
          const token = await loginWithCode(index)
          if (token !== undefined) {
            await call(
              LOGOUT,
              LogoutRequest.encode({ sessionToken: token, allSessions: false }).finish(),
            )
          }
        }
        return true
      }
    }
  }

  const wait = spec.startAt - now()
  if (wait > 0) await sleep(wait)
  const interval =
    spec.ratePerSecond === undefined ? 0 : (1000 * spec.concurrency) / spec.ratePerSecond
  const slot = async (n: number): Promise<void> => {
    let next = spec.startAt + (interval * n) / spec.concurrency
    while (now() < endAt) {
      if (interval > 0) {
        const delay = next - now()
        next += interval
        if (delay > 0) await sleep(delay)
      }
      if (!(await iterate())) {
        exhaustedAt ??= now()
        return
      }
    }
  }
  await Promise.all(Array.from({ length: spec.concurrency }, (_, n) => slot(n)))
  for (const c of connections) c.close()
  return {
    end: samples.end.slice(0, samples.count),
    latencyUs: samples.latencyUs.slice(0, samples.count),
    rpc: samples.rpc.slice(0, samples.count),
    status: samples.status.slice(0, samples.count),
    count: samples.count,
    exhaustedAt,
    produced,
    tokens,
    missingCodes,
    freshNext: spec.fresh.next,
  }
}

if (parentPort !== null) {
  const port = parentPort
  // Loaded: the bench answers with the start time, the same for every worker of the phase.
  port.once('message', (startAt: number) => {
    run({ ...(workerData as WorkerSpec), startAt }).then(
      (result) => {
        port.postMessage(result)
      },
      (error: unknown) => {
        throw error
      },
    )
  })
  port.postMessage('loaded')
}
