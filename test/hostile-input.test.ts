import { connect, constants as h2, type ClientHttp2Session } from 'node:http2'
import { Client, credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { OtpAuthError } from '../src/client/otpauth-client.js'
import { Status } from '../gen/google/rpc/status.js'
import { ErrorInfo } from '../gen/google/rpc/error_details.js'
import {
  AddEmailRequest,
  ChangePasswordRequest,
  ChangePhoneNumberRequest,
  DeleteAccountRequest,
  ListSessionsRequest,
  LoginRequest,
  LogoutRequest,
  OtpAuthService,
  RegisterRequest,
  Channel,
  RequestLoginCodeRequest,
  RequestPhoneChangeRequest,
  RevokeSessionRequest,
  ValidateSessionRequest,
  VerifyEmailRequest,
  VerifyOtpRequest,
} from '../gen/otpauth/v1/otpauth.js'
import {
  OTPAUTH_RPCS,
  PHONES,
  signUpVerified,
  startTestServer,
  type TestServer,
} from './harness.js'
import { frame, UnhandledGuard, wire } from './hostile-support.js'

const path = (rpc: string): string => `/otpauth.v1.OtpAuth/${rpc}`

// Statuses the service itself answers with; each must carry an otpauth ErrorInfo.
const SERVICE_CODES = new Set([
  status.INVALID_ARGUMENT,
  status.NOT_FOUND,
  status.UNAUTHENTICATED,
  status.RESOURCE_EXHAUSTED,
  status.FAILED_PRECONDITION,
])

const VALID = Object.values(PHONES)

/** Any client address: IPv4 or IPv6, so lockouts never hide the answer under test. */
const ip = fc.oneof(fc.ipV4(), fc.ipV6())

const ascii = (chars: string): fc.Arbitrary<string> => fc.constantFrom(...chars.split(''))
const digitString = (min: number, max: number): fc.Arbitrary<string> =>
  fc.string({ unit: ascii('0123456789'), minLength: min, maxLength: max })

/** Numbers in every notation people and programs write them in, valid ones included. */
const phoneLike: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(...VALID),
  fc
    .tuple(
      fc.constantFrom('', '+', '00', '+1 ', '(', 'tel:+', '+44 (0)', '＋', '++', '-', '011 '),
      fc.array(
        fc.tuple(
          digitString(1, 5),
          fc.constantFrom(' ', '-', '.', '/', '\u00a0', '\u2011', '', ')', '('),
        ),
        { maxLength: 6 },
      ),
      fc.constantFrom('', ' ext. 12', ';ext=9', 'x1', ' ', '#', '\n', '\0'),
    )
    .map(([a, parts, c]) => a + parts.map(([d, s]) => d + s).join('') + c),
  // Valid numbers with fullwidth and Arabic-Indic digits, and in number formats.
  fc
    .constantFrom(...VALID)
    .map((p) => p.replace(/[0-9]/g, (d) => String.fromCharCode(0xff10 + Number(d)))),
  fc
    .constantFrom(...VALID)
    .map((p) => p.replace(/[0-9]/g, (d) => String.fromCharCode(0x0660 + Number(d)))),
  fc.constantFrom(
    '1e10',
    '+1.4155552671e10',
    '14155552671.0',
    '-14155552671',
    '0x3DE14B2FF',
    'NaN',
    'Infinity',
    '+١٤١٥٥٥٥٢٦٧١',
    '+1 415 555 2671 ext. 99999999999999999999',
    '\u202e+14155552671',
    '+1\u200b4155552671',
  ),
  fc.string({ unit: 'binary', maxLength: 80 }),
  fc.string({ unit: fc.integer({ min: 0, max: 31 }).map((c) => String.fromCharCode(c)) }),
  fc.string({ unit: 'grapheme', maxLength: 30 }),
  fc.string({ minLength: 60, maxLength: 70 }),
  fc.string({ unit: 'binary-ascii', minLength: 1_000, maxLength: 15_000 }),
)

/** Codes: digits in other scripts, signs, exponents, whitespace, wrong lengths. */
const codeLike: fc.Arbitrary<string> = fc.oneof(
  digitString(0, 8),
  fc.constantFrom(
    '１２３４５６',
    '١٢٣٤٥٦',
    '12345６',
    '+12345',
    '-12345',
    '1e5',
    '0x1234',
    '12 345',
    ' 123456 ',
    '123456\n',
    '123456\0',
    '\u3000123456',
    '1234567',
    '000000',
    '999999',
  ),
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc.string({ unit: 'binary-ascii', minLength: 7, maxLength: 12_000 }),
)

/** Passwords at and around the limits, in characters that are 1 to 4 bytes, and that NFKC grows. */
const passwordLike: fc.Arbitrary<string> = fc.oneof(
  fc
    .tuple(
      fc.constantFrom(0, 1, 7, 8, 9, 127, 128, 129, 200, 513),
      fc.constantFrom('a', 'é', '€', '😀', 'ﷺ', '\0', 'ﬁ', '\u0301', ' '),
    )
    .map(([n, ch]) => ch.repeat(n)),
  fc.string({ unit: 'binary', maxLength: 140 }),
  fc.string({ unit: 'grapheme', minLength: 120, maxLength: 135 }),
  fc.string({ minLength: 100, maxLength: 5_000 }),
)

/** What the server sees of a JS string: protobuf carries it as UTF-8 (lone surrogates → U+FFFD). */
const overTheWire = (s: string): string => Buffer.from(s, 'utf8').toString('utf8')
const chars = (s: string): number => Array.from(overTheWire(s).normalize('NFKC')).length

async function outcome(call: Promise<unknown>): Promise<OtpAuthError | 'OK'> {
  try {
    await call
    return 'OK'
  } catch (error) {
    if (error instanceof OtpAuthError) return error
    throw error
  }
}

/** expectClearError: a service status with ErrorInfo, or the transport's own size limit. */
function expectClearError(err: OtpAuthError, fields: readonly string[]): void {
  if (err.code === status.RESOURCE_EXHAUSTED && err.reason === undefined) {
    // grpc-js' own answer to a message over grpc.max_receive_message_length.
    expect(err.message).toMatch(/larger than max/)
    return
  }
  expect(SERVICE_CODES.has(err.code), `${status[err.code]}: ${err.message}`).toBe(true)
  expect(err.domain).toBe('otpauth')
  expect(err.reason).toMatch(/^[A-Z][A-Z0-9_]+[A-Z0-9]$/)
  if (err.code === status.INVALID_ARGUMENT) {
    expect(err.violations).toHaveLength(1)
    expect(fields).toContain(err.violations[0]?.field)
  }
  if (err.code === status.RESOURCE_EXHAUSTED) expect(err.retryDelayMs).toBeGreaterThan(0)
}

async function expectStillServing(t: TestServer, phone: string): Promise<void> {
  const health = await healthCheck(t.address)
  expect(health).toBe('SERVING')
  t.clock.advance(3_600_000)
  await signUpVerified(t, phone, 'a sound password', '203.0.113.250')
  const session = await t.client.login(
    { phoneNumber: phone, credential: { $case: 'password', value: 'a sound password' } },
    t.as('203.0.113.251'),
  )
  expect((await t.client.validateSession({ sessionToken: session.sessionToken })).phoneNumber).toBe(
    phone,
  )
}

/** healthCheck calls grpc.health.v1.Health/Check for the whole server over raw bytes. */
async function healthCheck(address: string): Promise<string> {
  const reply = await rawUnary(address, '/grpc.health.v1.Health/Check', Buffer.alloc(0))
  if (reply instanceof Error) throw reply
  // HealthCheckResponse { status = 1 (enum) }: 1 = SERVING, 2 = NOT_SERVING.
  return reply[1] === 1 ? 'SERVING' : `status ${String(reply[1])}`
}

const rawClients = new Map<string, Client>()
function rawUnary(
  address: string,
  method: string,
  body: Buffer,
  metadata = new Metadata(),
): Promise<Buffer | ServiceError> {
  let client = rawClients.get(address)
  if (client === undefined) {
    client = new Client(address, credentials.createInsecure())
    rawClients.set(address, client)
  }
  const c = client
  return new Promise((resolve) => {
    c.makeUnaryRequest(
      method,
      (b: Buffer) => b,
      (b: Buffer) => b,
      body,
      metadata,
      { deadline: Date.now() + 5_000 },
      (error, response) => {
        resolve(error ?? response ?? Buffer.alloc(0))
      },
    )
  })
}

function closeRawClient(address: string): void {
  rawClients.get(address)?.close()
  rawClients.delete(address)
}

function detailsOf(error: ServiceError): { reason: string; domain: string } | undefined {
  const raw = error.metadata.get('grpc-status-details-bin')[0]
  if (!(raw instanceof Buffer)) return undefined
  const info = Status.decode(raw).details.find((d) => d.typeUrl.endsWith('google.rpc.ErrorInfo'))
  return info === undefined ? undefined : ErrorInfo.decode(info.value)
}

const inputConfig = {
  resendCooldownSeconds: 0,
  sendsPerNumberPerHour: 100,
  sendsPerClientPerHour: 1_000_000,
}

describe('hostile input over the typed client', () => {
  it('when every field of every RPC gets arbitrary text, then each answer is a clear status and the service keeps working', async () => {
    const guard = new UnhandledGuard()
    const t = await startTestServer({ config: inputConfig })
    const tried: Record<string, number> = {}
    const count = (rpc: string): void => {
      tried[rpc] = (tried[rpc] ?? 0) + 1
    }
    const runs = { numRuns: 150 }

    await fc.assert(
      fc.asyncProperty(phoneLike, fc.option(passwordLike), ip, async (phone, password, from) => {
        count('Register')
        t.clock.advance(40_000) // keeps any one number under its hourly cap
        const req = password === null ? { phoneNumber: phone } : { phoneNumber: phone, password }
        const res = await outcome(t.client.register(req, t.as(from)))
        if (res === 'OK') {
          expect(t.sms.messages.at(-1)?.phone).toMatch(/^\+[1-9][0-9]{6,14}$/)
        } else {
          expectClearError(res, ['phone_number', 'password'])
          expect(res.code).not.toBe(status.UNAUTHENTICATED)
        }
      }),
      runs,
    )

    await fc.assert(
      fc.asyncProperty(phoneLike, codeLike, ip, async (phone, code, from) => {
        count('VerifyOtp')
        const res = await outcome(t.client.verifyOtp({ phoneNumber: phone, code }, t.as(from)))
        if (res !== 'OK') expectClearError(res, ['phone_number', 'code'])
      }),
      runs,
    )

    await fc.assert(
      fc.asyncProperty(phoneLike, ip, async (phone, from) => {
        count('RequestLoginCode')
        t.clock.advance(40_000)
        const res = await outcome(t.client.requestLoginCode({ phoneNumber: phone }, t.as(from)))
        if (res !== 'OK') expectClearError(res, ['phone_number'])
      }),
      runs,
    )

    const credential = fc.option(
      fc.oneof(
        passwordLike.map((value) => ({ $case: 'password' as const, value })),
        codeLike.map((value) => ({ $case: 'code' as const, value })),
      ),
    )
    await fc.assert(
      fc.asyncProperty(phoneLike, credential, ip, async (phone, cred, from) => {
        count('Login')
        const req =
          cred === null ? { phoneNumber: phone } : { phoneNumber: phone, credential: cred }
        const res = await outcome(t.client.login(req, t.as(from)))
        expect(res).not.toBe('OK')
        if (res !== 'OK') expectClearError(res, ['phone_number', 'password', 'code', 'credential'])
      }),
      runs,
    )

    const token = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 60 }),
      fc.base64String({ minLength: 40, maxLength: 48 }),
      fc.stringMatching(/^[A-Za-z0-9_-]{43}$/),
      fc.string({ unit: 'binary-ascii', minLength: 1000, maxLength: 15_000 }),
    )
    await fc.assert(
      fc.asyncProperty(token, async (sessionToken) => {
        count('ValidateSession')
        count('Logout')
        const v = await outcome(t.client.validateSession({ sessionToken }))
        expect(v).not.toBe('OK')
        if (v !== 'OK') expectClearError(v, ['session_token'])
        const l = await outcome(t.client.logout({ sessionToken }))
        if (l !== 'OK') expectClearError(l, ['session_token'])
      }),
      runs,
    )

    await expectStillServing(t, PHONES.dave)
    expect(guard.seen).toEqual([])
    console.log(`hostile input (typed client): ${JSON.stringify(tried)}`)
  })

  it('when a password is at or past the length limits, then only 8..128 characters register and 1..128 log in', async () => {
    const t = await startTestServer({ config: inputConfig })
    let tried = 0
    await fc.assert(
      fc.asyncProperty(passwordLike, fc.ipV4(), async (password, from) => {
        tried += 1
        t.clock.advance(40_000)
        const n = chars(password)
        const reg = await outcome(
          t.client.register({ phoneNumber: PHONES.carol, password }, t.as(from)),
        )
        const registerOk = n >= 8 && n <= 128
        expect(reg === 'OK' ? 'OK' : reg.reason).toBe(registerOk ? 'OK' : 'INVALID_PASSWORD')

        const login = await outcome(
          t.client.login(
            { phoneNumber: PHONES.bob, credential: { $case: 'password', value: password } },
            t.as(from),
          ),
        )
        expect(login).not.toBe('OK')
        if (login === 'OK') return
        const loginFormatOk = n >= 1 && n <= 128
        if (loginFormatOk) expect(login.reason).not.toBe('INVALID_PASSWORD')
        else expect(login.reason).toBe('INVALID_PASSWORD')
      }),
      { numRuns: 120 },
    )
    console.log(`password length limits: ${tried} passwords tried`)
  })

  it('when a code is not exactly six ASCII digits, then VerifyOtp and Login answer INVALID_ARGUMENT on the code field', async () => {
    const t = await startTestServer()
    let tried = 0
    await fc.assert(
      fc.asyncProperty(codeLike, fc.ipV4(), async (code, from) => {
        tried += 1
        const wellFormed = /^[0-9]{6}$/.test(overTheWire(code).trim())
        for (const call of [
          t.client.verifyOtp({ phoneNumber: PHONES.alice, code }, t.as(from)),
          t.client.login(
            { phoneNumber: PHONES.alice, credential: { $case: 'code', value: code } },
            t.as(from),
          ),
        ]) {
          const res = await outcome(call)
          expect(res).not.toBe('OK')
          if (res === 'OK') continue
          if (wellFormed) expect(res.reason).not.toBe('INVALID_CODE_FORMAT')
          else
            expect([res.reason, res.violations[0]?.field]).toEqual(['INVALID_CODE_FORMAT', 'code'])
        }
      }),
      { numRuns: 150 },
    )
    console.log(`code formats: ${tried} codes tried`)
  })

  it('when x-forwarded-for holds garbage from a trusted proxy, then the call is still answered normally', async () => {
    const guard = new UnhandledGuard()
    const t = await startTestServer()
    let tried = 0
    const header = fc.oneof(
      fc.string({ unit: ascii('0123456789abcdef:.,[]% ff'), maxLength: 80 }),
      fc
        .array(fc.oneof(fc.ipV4(), fc.ipV6(), fc.ipV4Extended()), { maxLength: 20 })
        .map((a) => a.join(', ')),
      fc
        .string({ unit: 'binary-ascii', maxLength: 200 })
        .map((s) => s.replace(/[^\x20-\x7e]/g, '')),
    )
    await fc.assert(
      fc.asyncProperty(header, async (xff) => {
        tried += 1
        const res = await outcome(
          t.client.verifyOtp(
            { phoneNumber: PHONES.alice, code: '123456' },
            { metadata: { 'x-forwarded-for': xff } },
          ),
        )
        expect(res).not.toBe('OK')
        if (res !== 'OK') expectClearError(res, [])
      }),
      { numRuns: 200 },
    )
    expect(guard.seen).toEqual([])
    console.log(`x-forwarded-for values: ${tried} tried`)
  })
})

/** A valid request of each RPC, as wire bytes. */
function validRequest(rpc: string): Buffer {
  const phoneNumber = PHONES.alice
  const bytes = {
    Register: () => RegisterRequest.encode({ phoneNumber, password: 'a sound password' }).finish(),
    VerifyOtp: () => VerifyOtpRequest.encode({ phoneNumber, code: '123456' }).finish(),
    RequestLoginCode: () =>
      RequestLoginCodeRequest.encode({ phoneNumber, channel: Channel.CHANNEL_SMS }).finish(),
    Login: () =>
      LoginRequest.encode({
        phoneNumber,
        credential: { $case: 'password', value: 'a sound password' },
      }).finish(),
    ValidateSession: () => ValidateSessionRequest.encode({ sessionToken: 'A'.repeat(43) }).finish(),
    Logout: () =>
      LogoutRequest.encode({ sessionToken: 'A'.repeat(43), allSessions: false }).finish(),
    ChangePassword: () =>
      ChangePasswordRequest.encode({
        sessionToken: 'A'.repeat(43),
        newPassword: 'a sound password',
      }).finish(),
    ListSessions: () => ListSessionsRequest.encode({ sessionToken: 'A'.repeat(43) }).finish(),
    RevokeSession: () =>
      RevokeSessionRequest.encode({
        sessionToken: 'A'.repeat(43),
        sessionId: '5d0c1f7e-2b9a-4c1e-8f3d-6a7b8c9d0e1f',
      }).finish(),
    RequestPhoneChange: () =>
      RequestPhoneChangeRequest.encode({
        sessionToken: 'A'.repeat(43),
        newPhoneNumber: phoneNumber,
      }).finish(),
    ChangePhoneNumber: () =>
      ChangePhoneNumberRequest.encode({
        sessionToken: 'A'.repeat(43),
        newPhoneNumber: phoneNumber,
        code: '123456',
      }).finish(),
    DeleteAccount: () => DeleteAccountRequest.encode({ sessionToken: 'A'.repeat(43) }).finish(),
    AddEmail: () =>
      AddEmailRequest.encode({ sessionToken: 'A'.repeat(43), email: 'ana@example.com' }).finish(),
    VerifyEmail: () =>
      VerifyEmailRequest.encode({ sessionToken: 'A'.repeat(43), code: '123456' }).finish(),
  }[rpc]
  if (bytes === undefined) throw new Error(rpc)
  return Buffer.from(bytes())
}

const unknownField = fc.oneof(
  fc.tuple(fc.integer({ min: 5, max: 536_870_911 }), fc.nat()).map(([f, v]) => wire.uint(f, v)),
  fc
    .tuple(fc.integer({ min: 5, max: 1000 }), fc.uint8Array({ maxLength: 50 }))
    .map(([f, v]) => wire.bytes(f, v)),
  fc.integer({ min: 5, max: 1000 }).map((f) => wire.fixed64(f)),
  fc.integer({ min: 5, max: 1000 }).map((f) => wire.fixed32(f)),
)

describe('hostile input at the protobuf wire level', () => {
  it('when requests are random bytes, truncated, mutated, mistyped or carry invalid UTF-8, then every answer is a clear status', async () => {
    const guard = new UnhandledGuard()
    const t = await startTestServer({ config: inputConfig })
    const seen: Record<string, number> = {}
    let tried = 0

    const mutation = fc.oneof(
      // Random bytes.
      fc.uint8Array({ maxLength: 300 }).map((b) => () => Buffer.from(b)),
      // A valid request cut short.
      fc.nat().map((n) => (valid: Buffer) => valid.subarray(0, n % Math.max(1, valid.length))),
      // A valid request with bytes flipped.
      fc
        .array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 })
        .map((flips) => (valid: Buffer) => {
          const b = Buffer.from(valid)
          for (const [at, x] of flips) b[at % b.length] = (b[at % b.length] ?? 0) ^ x
          return b
        }),
      // Field 1 (the phone or token) as invalid UTF-8, overlong encodings and surrogates.
      fc
        .constantFrom(
          [0xff, 0xfe],
          [0xc0, 0xaf],
          [0xed, 0xa0, 0x80],
          [0x2b, 0x31, 0x80],
          [0xf4, 0x90, 0x80, 0x80],
        )
        .map((bad) => () => wire.bytes(1, Uint8Array.from(bad))),
      // Field 1 with the wrong wire type; a length prefix past the end; a group tag.
      fc.constantFrom(
        () => wire.uint(1, 14155552671),
        () => Buffer.concat([wire.tag(1, 2), wire.varint(1000), Buffer.from('+1')]),
        () => Buffer.from([0x0b, 0x0c]),
        () => Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
        () => wire.fixed64(1),
      ),
    )

    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...OTPAUTH_RPCS),
        mutation,
        fc.ipV4(),
        async (rpc, mutate, from) => {
          tried += 1
          t.clock.advance(40_000)
          const md = new Metadata()
          md.set('x-forwarded-for', from)
          const reply = await rawUnary(t.address, path(rpc), mutate(validRequest(rpc)), md)
          if (reply instanceof Buffer) {
            seen['OK'] = (seen['OK'] ?? 0) + 1
            return
          }
          const err = reply as ServiceError
          const name = status[err.code]
          seen[name] = (seen[name] ?? 0) + 1
          expect(SERVICE_CODES.has(err.code), `${name} ${err.details}`).toBe(true)
          expect(detailsOf(err)?.domain).toBe('otpauth')
        },
      ),
      { numRuns: 400 },
    )

    await expectStillServing(t, PHONES.dave)
    expect(guard.seen).toEqual([])
    closeRawClient(t.address)
    console.log(`wire-level requests: ${tried} tried, statuses ${JSON.stringify(seen)}`)
  })

  it('when a valid request carries unknown fields and both oneof members, then it is answered as without them', async () => {
    const t = await startTestServer()
    await signUpVerified(t, PHONES.alice, 'a sound password')
    const session = await t.client.login(
      { phoneNumber: PHONES.alice, credential: { $case: 'password', value: 'a sound password' } },
      t.as('198.51.100.1'),
    )
    let tried = 0
    await fc.assert(
      fc.asyncProperty(
        fc.array(unknownField, { maxLength: 8 }),
        fc.boolean(),
        async (extra, before) => {
          tried += 1
          const known = wire.bytes(1, session.sessionToken)
          const body = before ? Buffer.concat([...extra, known]) : Buffer.concat([known, ...extra])
          const reply = await rawUnary(t.address, path('ValidateSession'), body)
          expect(reply).toBeInstanceOf(Buffer)
          expect(OtpAuthService.validateSession.responseDeserialize(reply as Buffer).userId).toBe(
            session.userId,
          )
        },
      ),
      { numRuns: 100 },
    )

    // Both members of the oneof: the last on the wire wins, as protobuf specifies.
    const both = Buffer.concat([
      wire.bytes(1, PHONES.alice),
      wire.bytes(3, '000000'),
      wire.bytes(2, 'a sound password'),
    ])
    const md = new Metadata()
    md.set('x-forwarded-for', '198.51.100.2')
    const reply = await rawUnary(t.address, path('Login'), both, md)
    expect(reply).toBeInstanceOf(Buffer)
    closeRawClient(t.address)
    console.log(`unknown-field requests: ${tried} tried`)
  })
})

interface RawResult {
  httpStatus: number | undefined
  grpcStatus: number | undefined
  message: string | undefined
  details: boolean
  reset: boolean
}

/** rawStream sends one HTTP/2 request with the given headers and body chunks and waits for its end. */
function rawStream(
  session: ClientHttp2Session,
  headers: Record<string, string>,
  body: Buffer[],
  { end = true, timeoutMs = 5_000 } = {},
): Promise<RawResult> {
  return new Promise((resolve) => {
    const result: RawResult = {
      httpStatus: undefined,
      grpcStatus: undefined,
      message: undefined,
      details: false,
      reset: false,
    }
    const req = session.request({
      ':method': 'POST',
      'content-type': 'application/grpc',
      te: 'trailers',
      ...headers,
    })
    const timer = setTimeout(() => {
      req.close(h2.NGHTTP2_CANCEL)
      resolve({ ...result, message: 'client timeout' })
    }, timeoutMs)
    const take = (h: Record<string, unknown>): void => {
      if (h[':status'] !== undefined) result.httpStatus = Number(h[':status'])
      if (h['grpc-status'] !== undefined) result.grpcStatus = Number(h['grpc-status'])
      if (h['grpc-message'] !== undefined)
        result.message = decodeURIComponent(h['grpc-message'] as string)
      if (h['grpc-status-details-bin'] !== undefined) result.details = true
    }
    req.on('response', take)
    req.on('trailers', take)
    req.on('data', () => undefined)
    req.on('error', () => {
      result.reset = true
    })
    req.on('close', () => {
      clearTimeout(timer)
      if (req.rstCode !== h2.NGHTTP2_NO_ERROR) result.reset = true
      resolve(result)
    })
    for (const chunk of body) req.write(chunk)
    if (end) req.end()
  })
}

function h2connect(address: string): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = connect(`http://${address}`)
    session.once('connect', () => {
      resolve(session)
    })
    session.once('error', reject)
  })
}

describe('hostile input over raw HTTP/2', () => {
  it('when frames are malformed, mislabelled, oversized, truncated or flood one connection, then each ends with a clear status and the server stays up', async () => {
    const guard = new UnhandledGuard()
    const t = await startTestServer({ config: inputConfig })
    const session = await h2connect(t.address)
    const register = { ':path': path('Register') }
    const valid = frame(validRequest('RequestLoginCode'))
    const cases: [string, Record<string, string>, Buffer[], (r: RawResult) => void][] = [
      [
        'not protobuf',
        register,
        [frame(Buffer.from('{"phone_number":"+14155552671"}'))],
        (r) => {
          expect(r.grpcStatus).toBe(status.INVALID_ARGUMENT)
          expect(r.details).toBe(true)
        },
      ],
      [
        'wrong content-type',
        { ...register, 'content-type': 'application/json' },
        [Buffer.from('{}')],
        (r) => {
          expect(r.httpStatus).toBe(415)
        },
      ],
      [
        'text/plain content-type',
        { ...register, 'content-type': 'text/plain' },
        [valid],
        (r) => {
          expect(r.httpStatus).toBe(415)
        },
      ],
      [
        'unknown method',
        { ':path': '/otpauth.v1.OtpAuth/DeleteEveryone' },
        [valid],
        (r) => {
          expect(r.grpcStatus).toBe(status.UNIMPLEMENTED)
        },
      ],
      [
        'path traversal',
        { ':path': '/../../etc/passwd' },
        [valid],
        (r) => {
          expect(r.grpcStatus).toBe(status.UNIMPLEMENTED)
        },
      ],
      [
        'message over the 16 KiB limit',
        register,
        [frame(Buffer.concat([wire.bytes(1, 'x'.repeat(20_000))]))],
        (r) => {
          expect(r.grpcStatus).toBe(status.RESOURCE_EXHAUSTED)
        },
      ],
      [
        'length prefix claiming 4 GiB',
        register,
        [Buffer.from([0, 0xff, 0xff, 0xff, 0xff, 1, 2, 3])],
        (r) => {
          expect(r.grpcStatus).toBe(status.RESOURCE_EXHAUSTED)
        },
      ],
      [
        'truncated length prefix',
        register,
        [Buffer.from([0, 0, 0])],
        (r) => {
          expect(r.grpcStatus).toBeDefined()
          expect(r.grpcStatus).not.toBe(status.OK)
        },
      ],
      [
        'message shorter than its prefix',
        register,
        [Buffer.concat([Buffer.from([0, 0, 0, 0, 100]), Buffer.from('short')])],
        (r) => {
          expect(r.grpcStatus).toBeDefined()
          expect(r.grpcStatus).not.toBe(status.OK)
        },
      ],
      [
        'compressed flag without an encoding',
        register,
        [frame(validRequest('Register'), true)],
        (r) => {
          // grpc-js reads the bytes as identity-encoded: the valid request inside is answered.
          expect(r.grpcStatus).toBe(status.OK)
        },
      ],
      [
        'unsupported grpc-encoding',
        { ...register, 'grpc-encoding': 'br' },
        [frame(validRequest('Register'), true)],
        (r) => {
          expect(r.grpcStatus).toBe(status.UNIMPLEMENTED)
        },
      ],
      [
        'gzip flag with bytes that are not gzip',
        { ...register, 'grpc-encoding': 'gzip' },
        [frame(Buffer.from('not gzip at all'), true)],
        (r) => {
          expect(r.grpcStatus).toBeDefined()
          expect(r.grpcStatus).not.toBe(status.OK)
        },
      ],
      [
        'two messages on a unary call',
        { ':path': path('RequestLoginCode') },
        [valid, valid],
        (r) => {
          expect(r.grpcStatus).toBeDefined()
          expect(r.grpcStatus).not.toBe(status.OK)
        },
      ],
      [
        'no message at all',
        register,
        [],
        (r) => {
          expect(r.grpcStatus).toBeDefined()
          expect(r.grpcStatus).not.toBe(status.OK)
        },
      ],
      [
        'bad grpc-timeout',
        { ...register, 'grpc-timeout': '99999999999999999999H' },
        [valid],
        (r) => {
          expect(r.grpcStatus).toBeDefined()
        },
      ],
      [
        'huge x-forwarded-for',
        { ...register, 'x-forwarded-for': '1.2.3.4, '.repeat(2_000) },
        [valid],
        (r) => {
          expect(r.reset || r.grpcStatus !== undefined).toBe(true)
        },
      ],
    ]
    for (const [name, headers, body, check] of cases) {
      const r = await rawStream(session, headers, body)
      expect(r.message, name).not.toBe('client timeout')
      check(r)
    }

    // A stream whose client stops half way: cancelled by the client after a partial frame.
    const half = session.request({
      ':method': 'POST',
      ':path': path('Register'),
      'content-type': 'application/grpc',
      te: 'trailers',
    })
    half.write(Buffer.from([0, 0, 0, 0, 50, 1, 2]))
    await new Promise((r) => setTimeout(r, 50))
    half.close(h2.NGHTTP2_CANCEL)

    // Many concurrent streams on one connection: more than grpc.max_concurrent_streams.
    const flood = Array.from({ length: 1_500 }, (_, i) =>
      rawStream(
        session,
        { ':path': path('VerifyOtp'), 'x-forwarded-for': `10.9.${i >> 8}.${i & 255}` },
        [frame(validRequest('VerifyOtp'))],
        { timeoutMs: 20_000 },
      ),
    )
    const results = await Promise.all(flood)
    const answered = results.filter((r) => r.grpcStatus !== undefined)
    expect(results.every((r) => r.message !== 'client timeout')).toBe(true)
    expect(answered.length).toBeGreaterThan(0)
    for (const r of answered) expect(r.grpcStatus).toBe(status.UNAUTHENTICATED)
    session.close()

    // Connections opened and dropped without a word, and a connection sending garbage bytes.
    const { Socket } = await import('node:net')
    for (let i = 0; i < 50; i += 1) {
      const s = new Socket()
      s.connect(t.app.port, '127.0.0.1', () => {
        s.write(i % 2 === 0 ? 'GET / HTTP/1.1\r\n\r\n' : Buffer.alloc(100, 0xff))
        s.destroy()
      })
      s.on('error', () => undefined)
    }

    await expectStillServing(t, PHONES.dave)
    expect(guard.seen).toEqual([])
    console.log(
      `raw HTTP/2: ${cases.length} malformed requests, ${flood.length} concurrent streams ` +
        `(${answered.length} answered, ${flood.length - answered.length} refused), 50 garbage connections`,
    )
  })
})
