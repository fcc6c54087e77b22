import { request as httpRequest } from 'node:http'
import { status } from '@grpc/grpc-js'
import { describe, expect, it } from 'vitest'
import type { Config } from '../src/config.js'
import { compileTemplate, loadRegistry, httpRoutes } from '../src/http/http-rules.js'
import { httpStatusOf } from '../src/http/http-status.js'
import { SERVICE_NAME } from '../src/rpc/server.js'
import { failure, OTPAUTH_RPCS, PHONES, startTestServer, type TestServer } from './harness.js'

interface RestAnswer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Record<string, unknown>
}

/** startRestServer runs the service with its REST door on a free loopback port. */
async function startRestServer(config: Partial<Config> = {}): Promise<TestServer> {
  return startTestServer({ config: { httpAddress: '127.0.0.1:0', ...config } })
}

/** rest sends one HTTP/1.1 request to the door, as a browser or curl would. */
function rest(
  t: TestServer,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<RestAnswer> {
  const payload =
    body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body)
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: '127.0.0.1',
        port: t.app.httpPort,
        method,
        path,
        headers: {
          ...(payload === undefined ? {} : { 'content-type': 'application/json' }),
          ...headers,
        },
      },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8')
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>),
          })
        })
      },
    )
    req.on('error', reject)
    req.end(payload)
  })
}

function errorInfo(answer: RestAnswer): Record<string, unknown> | undefined {
  const details = answer.body['details'] as Record<string, unknown>[] | undefined
  return details?.find((d) => d['@type'] === 'type.googleapis.com/google.rpc.ErrorInfo')
}

describe('REST front door: routes come from the google.api.http annotations', () => {
  it('when every binding is called, then each reaches its RPC (the RPC, not the door, answers)', async () => {
    // Arrange
    const t = await startRestServer()
    const routes = httpRoutes(loadRegistry(), [SERVICE_NAME])
    const methods = new Set(routes.map((r) => r.method.name))

    // Act: an empty request is invalid for every RPC, so each one answers with its own reason
    // (an empty token names no session: UNAUTHENTICATED, and for Logout nothing to end).
    const answers = await Promise.all(
      routes.map(async (r) => ({ route: r, answer: await rest(t, r.httpMethod, r.template, {}) })),
    )

    // Assert
    expect([...methods].sort()).toEqual([...OTPAUTH_RPCS].sort())
    expect(routes.map((r) => r.template)).toEqual(
      expect.arrayContaining(['/api/register/', '/api/verify-otp/', '/api/login/']),
    )
    const tokenOnly = new Set(['ValidateSession', 'ListSessions', 'DeleteAccount'])
    for (const { route, answer } of answers) {
      if (route.method.name === 'Logout') {
        expect(answer.status, route.template).toBe(200)
        continue
      }
      const unauthenticated = tokenOnly.has(route.method.name)
      expect(answer.status, route.template).toBe(unauthenticated ? 401 : 400)
      expect(answer.body['code'], route.template).toBe(
        unauthenticated ? status.UNAUTHENTICATED : status.INVALID_ARGUMENT,
      )
      expect(errorInfo(answer)?.['domain'], route.template).toBe('otpauth')
    }
  })

  it('when the original API is called with its exact requests, then it answers with the same messages', async () => {
    // Arrange
    const t = await startRestServer()
    const phone = PHONES.alice

    // Act + Assert: sign-up, verification and password login, trailing slashes and snake_case.
    const registered = await rest(t, 'POST', '/api/register/', {
      phone_number: phone,
      password: 'correct horse battery',
    })
    expect(registered.status).toBe(200)
    expect(registered.body['message']).toBe('OTP sent to phone number')
    expect(registered.body).toHaveProperty('code_expires_at')
    expect(registered.body).toHaveProperty('resend_available_at')

    const code = t.sms.lastCodeFor(phone, 'register')
    const verified = await rest(t, 'POST', '/api/verify-otp/', { phone_number: phone, code })
    expect(verified).toMatchObject({
      status: 200,
      body: { message: 'OTP verified successfully, proceed to login' },
    })

    const login = await rest(t, 'POST', '/api/login/', {
      phone_number: phone,
      password: 'correct horse battery',
    })
    expect(login.status).toBe(200)
    expect(login.body['message']).toBe('Login successful')
    expect(login.body['session_token']).toMatch(/^[A-Za-z0-9_-]{43}$/)
    expect(Object.keys(login.body).sort()).toEqual(
      ['expires_at', 'message', 'session_token', 'user_id'].sort(),
    )
    expect(login.headers['content-type']).toMatch(/^application\/json/)
  })

  it('when lowerCamel names are sent, then they are accepted too; answers keep proto field names', async () => {
    // Arrange
    const t = await startRestServer()
    await rest(t, 'POST', '/api/register', { phoneNumber: PHONES.bob })
    const code = t.sms.lastCodeFor(PHONES.bob, 'register')
    await rest(t, 'POST', '/api/verify-otp', { phoneNumber: PHONES.bob, code })
    t.clock.advance(31_000) // past the resend cooldown
    await rest(t, 'POST', '/api/login/code', { phoneNumber: PHONES.bob })
    const loginCode = t.sms.lastCodeFor(PHONES.bob, 'login')

    // Act
    const login = await rest(t, 'POST', '/api/login', { phoneNumber: PHONES.bob, code: loginCode })
    const token = String(login.body['session_token'])
    const session = await rest(t, 'POST', '/api/session/validate', { sessionToken: token })
    const logout = await rest(t, 'POST', '/api/logout', { session_token: token })
    const after = await rest(t, 'POST', '/api/session/validate', { session_token: token })

    // Assert
    expect(login.status).toBe(200)
    expect(session.status).toBe(200)
    expect(session.body['phone_number']).toBe(PHONES.bob)
    expect(session.body['user_id']).toBe(login.body['user_id'])
    expect(logout).toMatchObject({ status: 200, body: {} })
    expect(after.status).toBe(401)
    expect(errorInfo(after)?.['reason']).toBe('SESSION_INVALID')
  })
})

describe('REST front door: path templates (google.api.http syntax)', () => {
  it('compiles literals, trailing slashes, variables, wildcards and custom verbs', () => {
    const match = (template: string, path: string): string[] | undefined => {
      const { regex } = compileTemplate(template)
      return regex.exec(path)?.slice(1)
    }
    expect(match('/api/login/', '/api/login/')).toEqual([])
    expect(match('/api/login/', '/api/login')).toBeUndefined()
    expect(match('/v1/users/{user_id}', '/v1/users/42')).toEqual(['42'])
    expect(match('/v1/users/{user_id}', '/v1/users/42/x')).toBeUndefined()
    expect(match('/v1/{name=shelves/*}/books:get', '/v1/shelves/7/books:get')).toEqual([
      'shelves/7',
    ])
    expect(match('/v1/{path=**}', '/v1/a/b/c')).toEqual(['a/b/c'])
    expect(compileTemplate('/v1/{a.b}/{c}').variables).toEqual(['a.b', 'c'])
  })
})

describe('REST front door: errors are google.rpc.Status JSON with Envoy status mapping', () => {
  it('maps every gRPC code as Envoy does', () => {
    const expected: Record<number, number> = {
      0: 200,
      1: 499,
      2: 500,
      3: 400,
      4: 504,
      5: 404,
      6: 409,
      7: 403,
      8: 429,
      9: 400,
      10: 409,
      11: 400,
      12: 501,
      13: 500,
      14: 503,
      15: 500,
      16: 401,
    }
    for (const [code, http] of Object.entries(expected)) {
      expect(httpStatusOf(Number(code)), `code ${code}`).toBe(http)
    }
    expect(httpStatusOf(99)).toBe(500)
  })

  it('when the phone number is invalid, then 400 with ErrorInfo and BadRequest field violations', async () => {
    const t = await startRestServer()
    const answer = await rest(t, 'POST', '/api/register/', { phone_number: '12' })
    expect(answer.status).toBe(400)
    expect(answer.body).toMatchObject({
      code: status.INVALID_ARGUMENT,
      message: 'invalid phone number',
    })
    const details = answer.body['details'] as Record<string, unknown>[]
    expect(details[0]).toMatchObject({
      '@type': 'type.googleapis.com/google.rpc.ErrorInfo',
      reason: 'INVALID_PHONE_NUMBER',
      domain: 'otpauth',
    })
    expect(details).toContainEqual(
      expect.objectContaining({
        '@type': 'type.googleapis.com/google.rpc.BadRequest',
        field_violations: [expect.objectContaining({ field: 'phone_number' })],
      }),
    )
  })

  it('when a code is wrong, then 401 UNAUTHENTICATED', async () => {
    const t = await startRestServer()
    const answer = await rest(t, 'POST', '/api/verify-otp/', {
      phone_number: PHONES.carol,
      code: '123456',
    })
    expect(answer.status).toBe(401)
    expect(answer.body['code']).toBe(status.UNAUTHENTICATED)
    expect(errorInfo(answer)?.['reason']).toBe('INVALID_CREDENTIALS')
  })

  it('when the right password is used on an unverified number, then 400 FAILED_PRECONDITION', async () => {
    const t = await startRestServer()
    await rest(t, 'POST', '/api/register/', {
      phone_number: PHONES.dave,
      password: 'long enough pw',
    })
    const answer = await rest(t, 'POST', '/api/login/', {
      phone_number: PHONES.dave,
      password: 'long enough pw',
    })
    expect(answer.status).toBe(400)
    expect(answer.body['code']).toBe(status.FAILED_PRECONDITION)
    expect(errorInfo(answer)?.['reason']).toBe('PHONE_NOT_VERIFIED')
  })

  it('when a resend comes too soon, then 429 with Retry-After from RetryInfo', async () => {
    const t = await startRestServer()
    await rest(t, 'POST', '/api/register/', { phone_number: PHONES.alice })
    const answer = await rest(t, 'POST', '/api/register/', { phone_number: PHONES.alice })
    expect(answer.status).toBe(429)
    expect(answer.headers['retry-after']).toBe('30')
    expect(answer.body['details']).toContainEqual({
      '@type': 'type.googleapis.com/google.rpc.RetryInfo',
      retry_delay: '30s',
    })
  })

  it('when the SMS provider fails, then 503 UNAVAILABLE', async () => {
    const t = await startRestServer()
    t.sms.failNext()
    const answer = await rest(t, 'POST', '/api/register/', { phone_number: PHONES.bob })
    expect(answer.status).toBe(503)
    expect(errorInfo(answer)?.['reason']).toBe('SMS_UNAVAILABLE')
  })

  it('when the request cannot be transcoded, then the door answers 404, 405, 413, 415 or 400 itself', async () => {
    const t = await startRestServer({ httpMaxBodyBytes: 1024 })
    const unknownPath = await rest(t, 'POST', '/api/nothing', {})
    const wrongMethod = await rest(t, 'GET', '/api/login/')
    const tooLarge = await rest(t, 'POST', '/api/login/', { phone_number: 'x'.repeat(2000) })
    const notJson = await rest(t, 'POST', '/api/login/', 'phone=1', {
      'content-type': 'text/plain',
    })
    const badJson = await rest(t, 'POST', '/api/login/', '{"phone_number":')
    const unknownField = await rest(t, 'POST', '/api/login/', { phone: PHONES.alice })
    const notAnObject = await rest(t, 'POST', '/api/login/', '[1]')

    expect(unknownPath).toMatchObject({ status: 404, body: { code: status.NOT_FOUND } })
    expect(wrongMethod).toMatchObject({ status: 405, headers: { allow: 'POST' } })
    expect(tooLarge).toMatchObject({ status: 413, body: { code: status.RESOURCE_EXHAUSTED } })
    expect(notJson.status).toBe(415)
    for (const answer of [badJson, unknownField, notAnObject]) {
      expect(answer).toMatchObject({ status: 400, body: { code: status.INVALID_ARGUMENT } })
    }
  })
})

describe('REST front door: the client lockout sees the REST client', () => {
  it('when an untrusted REST client fails 3 times, then it is locked, forged X-Forwarded-For or not, over REST and gRPC', async () => {
    // Arrange: nobody is a trusted proxy, so the REST client is its socket address (127.0.0.1).
    const t = await startRestServer({ trustedProxies: [] })
    const guess = (forged: string): Promise<RestAnswer> =>
      rest(
        t,
        'POST',
        '/api/verify-otp/',
        { phone_number: PHONES.alice, code: '000000' },
        { 'x-forwarded-for': forged },
      )

    // Act
    const failures = [
      await guess('198.51.100.1'),
      await guess('198.51.100.2'),
      await guess('198.51.100.3'),
    ]
    const locked = await guess('198.51.100.4')
    const overGrpc = await failure(t.client.verifyOtp({ phoneNumber: PHONES.bob, code: '000000' }))
    const forgedPass = await failure(
      t.client.verifyOtp(
        { phoneNumber: PHONES.bob, code: '000000' },
        {
          metadata: {
            'x-otpauth-gateway-client': '192.0.2.99',
            'x-otpauth-gateway-secret': 'guessed',
          },
        },
      ),
    )

    // Assert
    expect(failures.map((f) => f.status)).toEqual([401, 401, 401])
    expect(locked.status).toBe(429)
    expect(errorInfo(locked)?.['reason']).toBe('CLIENT_LOCKED_OUT')
    expect(Number(locked.headers['retry-after'])).toBe(3600)
    expect(overGrpc.reason).toBe('CLIENT_LOCKED_OUT')
    expect(forgedPass.reason).toBe('CLIENT_LOCKED_OUT')
  })

  it('when the REST peer is a trusted proxy, then the client named in X-Forwarded-For is locked, and only it', async () => {
    // Arrange: the harness trusts loopback, as a deployment behind a load balancer would.
    const t = await startRestServer()
    const guess = (client: string): Promise<RestAnswer> =>
      rest(
        t,
        'POST',
        '/api/login/',
        { phone_number: PHONES.alice, code: '000000' },
        { 'x-forwarded-for': `10.9.9.9, ${client}` },
      )

    // Act
    for (let i = 0; i < 3; i += 1) await guess('203.0.113.7')
    const locked = await guess('203.0.113.7')
    const neighbour = await guess('203.0.113.8')
    const sameClientOverGrpc = await failure(
      t.client.login(
        { phoneNumber: PHONES.alice, credential: { $case: 'code', value: '000000' } },
        t.as('203.0.113.7'),
      ),
    )

    // Assert
    expect(locked.status).toBe(429)
    expect(neighbour.status).toBe(401)
    expect(sameClientOverGrpc.reason).toBe('CLIENT_LOCKED_OUT')
    const lines = t.logs.entries().filter((e) => e['rpc'] === 'Login')
    expect(lines.at(-1)?.['client']).toBe('203.0.113.7')
  })
})

describe('REST front door: account lifecycle RPCs', () => {
  const PASSWORD = 'rest lifecycle password'
  const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

  /** restLogin logs a verified number in over REST with its password; returns the token. */
  async function restLogin(t: TestServer, phone: string, password = PASSWORD): Promise<string> {
    const login = await rest(t, 'POST', '/api/login', { phone_number: phone, password })
    expect(login.status, 'login').toBe(200)
    return String(login.body['session_token'])
  }

  /** signUp registers and verifies the number over gRPC, then logs in over REST. */
  async function signUp(t: TestServer, phone: string): Promise<string> {
    await t.client.register({ phoneNumber: phone, password: PASSWORD })
    await t.client.verifyOtp({ phoneNumber: phone, code: t.sms.lastCodeFor(phone, 'register') })
    return restLogin(t, phone)
  }

  function reasonOf(answer: RestAnswer): unknown {
    return errorInfo(answer)?.['reason']
  }

  it('when each new RPC is called at its path with snake_case JSON, then it answers 200 with proto field names', async () => {
    const t = await startRestServer()
    const first = await signUp(t, PHONES.alice)
    const second = await restLogin(t, PHONES.alice)

    // ValidateSession now names the session and its login time.
    const validated = await rest(t, 'POST', '/api/session/validate', { session_token: second })
    expect(validated.status).toBe(200)
    expect(Object.keys(validated.body).sort()).toEqual(
      ['authenticated_at', 'expires_at', 'phone_number', 'session_id', 'user_id'].sort(),
    )
    const secondId = String(validated.body['session_id'])
    expect(secondId).toMatch(UUID)
    expect(new Date(String(validated.body['authenticated_at'])).getTime()).toBe(t.clock.now())

    const listed = await rest(t, 'POST', '/api/sessions', { session_token: first })
    expect(listed.status).toBe(200)
    const sessions = listed.body['sessions'] as Record<string, unknown>[]
    expect(sessions).toHaveLength(2)
    for (const s of sessions) {
      expect(Object.keys(s).sort()).toEqual(
        [
          'authenticated_at',
          'client_address',
          'created_at',
          'current',
          'expires_at',
          'session_id',
        ].sort(),
      )
    }
    expect(sessions.filter((s) => s['current'] === true)).toHaveLength(1)
    expect(sessions.map((s) => s['session_id'])).toContain(secondId)

    const revoked = await rest(t, 'POST', '/api/sessions/revoke', {
      session_token: first,
      session_id: secondId,
    })
    expect(revoked).toMatchObject({ status: 200, body: {} })
    expect((await rest(t, 'POST', '/api/session/validate', { session_token: second })).status).toBe(
      401,
    )

    const changed = await rest(t, 'POST', '/api/password/change', {
      session_token: first,
      new_password: 'a brand new password',
    })
    expect(changed).toMatchObject({ status: 200, body: {} })
    await restLogin(t, PHONES.alice, 'a brand new password')

    const codeSent = await rest(t, 'POST', '/api/phone/change/code', {
      session_token: first,
      new_phone_number: PHONES.carol,
    })
    expect(codeSent.status).toBe(200)
    expect(codeSent.body).toEqual({
      message: 'OTP sent to phone number',
      code_expires_at: expect.any(String) as string,
      resend_available_at: expect.any(String) as string,
    })
    const moved = await rest(t, 'POST', '/api/phone/change', {
      session_token: first,
      new_phone_number: PHONES.carol,
      code: t.sms.lastCodeFor(PHONES.carol, 'phone_change'),
    })
    expect(moved).toMatchObject({ status: 200, body: { phone_number: PHONES.carol } })

    // Log out everywhere: the caller's session and the one logged in since (on the new number).
    const other = await restLogin(t, PHONES.carol, 'a brand new password')
    const out = await rest(t, 'POST', '/api/logout', { session_token: first, all_sessions: true })
    expect(out).toMatchObject({ status: 200, body: {} })
    for (const token of [first, other]) {
      const after = await rest(t, 'POST', '/api/session/validate', { session_token: token })
      expect(after.status).toBe(401)
      expect(reasonOf(after)).toBe('SESSION_INVALID')
    }

    const last = await restLogin(t, PHONES.carol, 'a brand new password')
    const deleted = await rest(t, 'POST', '/api/account/delete', { session_token: last })
    expect(deleted).toMatchObject({ status: 200, body: {} })
    const gone = await rest(t, 'POST', '/api/login', {
      phone_number: PHONES.carol,
      password: 'a brand new password',
    })
    expect(gone.status).toBe(401)
  })

  it('when a session-taking RPC gets a token naming no live session, then 401 UNAUTHENTICATED; Logout answers 200', async () => {
    const t = await startRestServer()
    // Every other field valid, so the token is what is judged.
    const calls: [string, Record<string, unknown>][] = [
      ['/api/session/validate', {}],
      ['/api/password/change', { new_password: 'long enough password' }],
      ['/api/sessions', {}],
      ['/api/sessions/revoke', { session_id: '3f1c2b7e-0d4a-4c8e-9b6f-2a5d8e7c1f09' }],
      ['/api/phone/change/code', { new_phone_number: PHONES.carol }],
      ['/api/phone/change', { new_phone_number: PHONES.carol, code: '123456' }],
      ['/api/account/delete', {}],
    ]

    for (const [path, fields] of calls) {
      const unknown = await rest(t, 'POST', path, { ...fields, session_token: 'A'.repeat(43) })
      const malformed = await rest(t, 'POST', path, { ...fields, session_token: 'nope' })
      expect([unknown.status, unknown.body['code'], reasonOf(unknown)], path).toEqual([
        401,
        status.UNAUTHENTICATED,
        'SESSION_INVALID',
      ])
      expect([malformed.status, malformed.body['code'], reasonOf(malformed)], path).toEqual([
        401,
        status.UNAUTHENTICATED,
        'INVALID_SESSION_TOKEN',
      ])
    }
    for (const session_token of ['A'.repeat(43), 'nope']) {
      const out = await rest(t, 'POST', '/api/logout', { session_token, all_sessions: true })
      expect(out).toMatchObject({ status: 200, body: {} })
    }
    expect(t.sms.messages).toEqual([])
  })

  it('when the login is too old, then the sensitive RPCs answer 400 FAILED_PRECONDITION REAUTHENTICATION_REQUIRED; a foreign session id is 404 NOT_FOUND', async () => {
    const t = await startRestServer()
    const token = await signUp(t, PHONES.alice)
    const bob = await signUp(t, PHONES.bob)
    const bobId = (await t.client.validateSession({ sessionToken: bob })).sessionId
    t.clock.advance(600_000)

    const sensitive: [string, Record<string, unknown>][] = [
      ['/api/password/change', { new_password: 'long enough password' }],
      ['/api/phone/change/code', { new_phone_number: PHONES.carol }],
      ['/api/phone/change', { new_phone_number: PHONES.carol, code: '123456' }],
      ['/api/account/delete', {}],
    ]
    for (const [path, fields] of sensitive) {
      const answer = await rest(t, 'POST', path, { ...fields, session_token: token })
      expect([answer.status, answer.body['code'], reasonOf(answer)], path).toEqual([
        400,
        status.FAILED_PRECONDITION,
        'REAUTHENTICATION_REQUIRED',
      ])
    }
    // Not sensitive: an old session still lists and revokes.
    expect((await rest(t, 'POST', '/api/sessions', { session_token: token })).status).toBe(200)
    const foreign = await rest(t, 'POST', '/api/sessions/revoke', {
      session_token: token,
      session_id: bobId,
    })
    expect([foreign.status, foreign.body['code'], reasonOf(foreign)]).toEqual([
      404,
      status.NOT_FOUND,
      'SESSION_NOT_FOUND',
    ])
    const badId = await rest(t, 'POST', '/api/sessions/revoke', {
      session_token: token,
      session_id: 'not-a-uuid',
    })
    expect([badId.status, reasonOf(badId)]).toEqual([400, 'INVALID_SESSION_ID'])
    // Bob's session was not touched.
    await t.client.validateSession({ sessionToken: bob })
  })
})
