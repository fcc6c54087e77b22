import {
  createFileRegistry,
  fromBinary,
  fromJson,
  toBinary,
  toJson,
  type DescMethod,
  type FileRegistry,
  type JsonValue,
} from '@bufbuild/protobuf'
import { BinaryReader, BinaryWriter, WireType } from '@bufbuild/protobuf/wire'
import {
  FileDescriptorProtoSchema,
  FileDescriptorSetSchema,
  type FileDescriptorProto,
} from '@bufbuild/protobuf/wkt'
import {
  credentials,
  makeGenericClientConstructor,
  Metadata,
  type Client,
  type ServiceError,
} from '@grpc/grpc-js'
import { describe, expect, it } from 'vitest'
import { OTPAUTH_RPCS, PHONES, startTestServer, type TestServer } from './harness.js'

// grpcurl carries the reflection protocol built in; so does this test, as a few hand-encoded
// fields (grpc/reflection/v1/reflection.proto), and nothing else: no copy of the service's proto.
type ReflectionRequest =
  { fileByFilename: string } | { fileContainingSymbol: string } | { listServices: true }

interface ReflectionAnswer {
  files: Uint8Array[]
  services: string[]
  error: { code: number; message: string } | undefined
}

const identity = (b: Buffer): Buffer => b

function encodeRequest(request: ReflectionRequest): Buffer {
  const w = new BinaryWriter()
  if ('fileByFilename' in request) w.tag(3, WireType.LengthDelimited).string(request.fileByFilename)
  else if ('fileContainingSymbol' in request)
    w.tag(4, WireType.LengthDelimited).string(request.fileContainingSymbol)
  else w.tag(7, WireType.LengthDelimited).string('*')
  return Buffer.from(w.finish())
}

function decodeAnswer(bytes: Uint8Array): ReflectionAnswer {
  const answer: ReflectionAnswer = { files: [], services: [], error: undefined }
  const r = new BinaryReader(bytes)
  while (r.pos < r.len) {
    const [field, wire] = r.tag()
    if (field === 4 || field === 6 || field === 7) {
      const inner = new BinaryReader(r.bytes())
      const error = { code: 0, message: '' }
      while (inner.pos < inner.len) {
        const [f, w] = inner.tag()
        if (field === 4 && f === 1) answer.files.push(inner.bytes())
        else if (field === 6 && f === 1) {
          const service = new BinaryReader(inner.bytes())
          while (service.pos < service.len) {
            const [sf, sw] = service.tag()
            if (sf === 1) answer.services.push(service.string())
            else service.skip(sw)
          }
        } else if (field === 7 && f === 1) error.code = inner.int32()
        else if (field === 7 && f === 2) error.message = inner.string()
        else inner.skip(w)
      }
      if (field === 7) answer.error = error
    } else r.skip(wire)
  }
  return answer
}

/** Reflector is a grpcurl-style reflection client over one bidirectional stream per question. */
class Reflector {
  readonly #client: Client
  readonly #path: string

  constructor(address: string, version: 'v1' | 'v1alpha' = 'v1') {
    this.#path = `/grpc.reflection.${version}.ServerReflection/ServerReflectionInfo`
    const Ctor = makeGenericClientConstructor({}, 'ServerReflection')
    this.#client = new Ctor(address, credentials.createInsecure())
  }

  ask(request: ReflectionRequest): Promise<ReflectionAnswer> {
    return new Promise((resolve, reject) => {
      const stream = this.#client.makeBidiStreamRequest(this.#path, identity, identity)
      stream.on('data', (data: Buffer) => {
        resolve(decodeAnswer(data))
        stream.end()
      })
      stream.on('error', reject)
      stream.write(encodeRequest(request))
    })
  }

  /** describe loads the file defining `symbol` and, transitively, every file it imports. */
  async describe(symbols: readonly string[]): Promise<FileRegistry> {
    const files = new Map<string, FileDescriptorProto>()
    const add = (answer: ReflectionAnswer): void => {
      if (answer.error !== undefined) throw new Error(answer.error.message)
      for (const bytes of answer.files) {
        const file = fromBinary(FileDescriptorProtoSchema, bytes)
        files.set(file.name, file)
      }
    }
    for (const symbol of symbols) add(await this.ask({ fileContainingSymbol: symbol }))
    for (let missing = missingDeps(files); missing.length > 0; missing = missingDeps(files)) {
      for (const name of missing) add(await this.ask({ fileByFilename: name }))
    }
    // Throws, like grpcurl, when any type cannot be resolved.
    return createFileRegistry(
      fromBinary(
        FileDescriptorSetSchema,
        toBinary(FileDescriptorSetSchema, {
          $typeName: 'google.protobuf.FileDescriptorSet',
          file: importsFirst(files),
        }),
      ),
    )
  }

  close(): void {
    this.#client.close()
  }
}

/** importsFirst orders files so that each comes after the files it imports. */
function importsFirst(files: Map<string, FileDescriptorProto>): FileDescriptorProto[] {
  const ordered: FileDescriptorProto[] = []
  const visit = (name: string): void => {
    const file = files.get(name)
    if (file === undefined || ordered.includes(file)) return
    file.dependency.forEach(visit)
    ordered.push(file)
  }
  ;[...files.keys()].forEach(visit)
  return ordered
}

function missingDeps(files: Map<string, FileDescriptorProto>): string[] {
  const wanted = [...files.values()].flatMap((f) => f.dependency)
  return [...new Set(wanted)].filter((name) => !files.has(name))
}

/** invoke calls a method by its full name with a JSON request, as `grpcurl -d '{…}' addr Svc/M`. */
async function invoke(
  t: TestServer,
  registry: FileRegistry,
  fullMethod: string,
  request: JsonValue,
): Promise<{ json?: JsonValue; error?: ServiceError; status?: JsonValue }> {
  const [serviceName = '', methodName = ''] = fullMethod.split('/')
  const method = registry.getService(serviceName)?.methods.find((m) => m.name === methodName)
  if (method === undefined) throw new Error(`${fullMethod} is not described`)
  const body = toBinary(method.input, fromJson(method.input, request, { registry }))
  const Ctor = makeGenericClientConstructor({}, serviceName)
  const client = new Ctor(t.address, credentials.createInsecure())
  try {
    const bytes = await new Promise<Buffer>((resolve, reject) => {
      client.makeUnaryRequest(
        `/${serviceName}/${methodName}`,
        identity,
        identity,
        Buffer.from(body),
        new Metadata(),
        { deadline: Date.now() + 5_000 },
        (error, value) => {
          if (error) reject(error)
          else resolve(value ?? Buffer.alloc(0))
        },
      )
    })
    return { json: toJson(method.output, fromBinary(method.output, bytes), { registry }) }
  } catch (error) {
    const serviceError = error as ServiceError
    const raw = serviceError.metadata.get('grpc-status-details-bin')[0]
    const statusType = registry.getMessage('google.rpc.Status')
    const status =
      raw instanceof Buffer && statusType !== undefined
        ? toJson(statusType, fromBinary(statusType, raw), { registry })
        : undefined
    return { error: serviceError, ...(status === undefined ? {} : { status }) }
  } finally {
    client.close()
  }
}

function methodNames(registry: FileRegistry, service: string): string[] {
  return (registry.getService(service)?.methods ?? []).map((m: DescMethod) => m.name)
}

describe('grpcurl against the server: reflection alone, no proto files', () => {
  it('when services are listed (v1 and v1alpha), then OtpAuth and Health are there', async () => {
    const t = await startTestServer()
    for (const version of ['v1', 'v1alpha'] as const) {
      const reflector = new Reflector(t.address, version)
      const answer = await reflector.ask({ listServices: true })
      reflector.close()
      expect(answer.services, version).toEqual(
        expect.arrayContaining(['otpauth.v1.OtpAuth', 'grpc.health.v1.Health']),
      )
    }
  })

  it('when each service is described, then every message resolves, Timestamp and error details included', async () => {
    // Arrange
    const t = await startTestServer()
    const reflector = new Reflector(t.address)

    // Act: `grpcurl describe` for the services and the error-detail types named in the API docs.
    const registry = await reflector.describe([
      'otpauth.v1.OtpAuth',
      'grpc.health.v1.Health',
      'google.rpc.Status',
      'google.rpc.ErrorInfo',
      'google.rpc.RetryInfo',
      'google.rpc.BadRequest',
    ])
    reflector.close()

    // Assert
    expect(methodNames(registry, 'otpauth.v1.OtpAuth')).toEqual(OTPAUTH_RPCS)
    expect(methodNames(registry, 'grpc.health.v1.Health')).toEqual(
      expect.arrayContaining(['Check', 'Watch']),
    )
    const login = registry.getMessage('otpauth.v1.LoginResponse')
    expect(login?.fields.map((f) => f.name)).toEqual([
      'message',
      'session_token',
      'expires_at',
      'user_id',
    ])
    expect(login?.fields.find((f) => f.name === 'expires_at')?.message?.typeName).toBe(
      'google.protobuf.Timestamp',
    )
    const loginRequest = registry.getMessage('otpauth.v1.LoginRequest')
    expect(loginRequest?.oneofs.map((o) => [o.name, o.fields.map((f) => f.name)])).toEqual([
      ['credential', ['password', 'code']],
    ])
    for (const type of ['ErrorInfo', 'RetryInfo', 'BadRequest', 'Status']) {
      expect(registry.getMessage(`google.rpc.${type}`), type).toBeDefined()
    }
    expect(
      registry.getMessage('google.rpc.RetryInfo')?.fields.find((f) => f.name === 'retry_delay')
        ?.message?.typeName,
    ).toBe('google.protobuf.Duration')
  })

  it('when every method is called by name, then the flows work and errors decode with the described types', async () => {
    // Arrange
    const t = await startTestServer()
    const reflector = new Reflector(t.address)
    const registry = await reflector.describe([
      'otpauth.v1.OtpAuth',
      'grpc.health.v1.Health',
      'google.rpc.Status',
      'google.rpc.ErrorInfo',
    ])
    reflector.close()
    const phone = PHONES.carol
    const call = (method: string, request: JsonValue) => invoke(t, registry, method, request)

    // Act + Assert, as the README's grpcurl walk-through does it.
    const health = await call('grpc.health.v1.Health/Check', { service: 'otpauth.v1.OtpAuth' })
    expect(health.json).toEqual({ status: 'SERVING' })

    const registered = await call('otpauth.v1.OtpAuth/Register', { phone_number: phone })
    expect(registered.json).toMatchObject({ message: 'OTP sent to phone number' })

    const verified = await call('otpauth.v1.OtpAuth/VerifyOtp', {
      phone_number: phone,
      code: t.sms.lastCodeFor(phone, 'register'),
    })
    expect(verified.json).toEqual({ message: 'OTP verified successfully, proceed to login' })

    t.clock.advance(31_000)
    const codeSent = await call('otpauth.v1.OtpAuth/RequestLoginCode', { phoneNumber: phone })
    expect(codeSent.json).toMatchObject({ message: 'OTP sent to phone number' })

    const login = await call('otpauth.v1.OtpAuth/Login', {
      phone_number: phone,
      code: t.sms.lastCodeFor(phone, 'login'),
    })
    expect(login.json).toMatchObject({ message: 'Login successful' })
    const token = (login.json as { sessionToken: string }).sessionToken

    const session = await call('otpauth.v1.OtpAuth/ValidateSession', { session_token: token })
    expect(session.json).toMatchObject({ phoneNumber: phone })

    const logout = await call('otpauth.v1.OtpAuth/Logout', { session_token: token })
    expect(logout.json).toEqual({})

    const ended = await call('otpauth.v1.OtpAuth/ValidateSession', { session_token: token })
    expect(ended.error?.code).toBe(16)
    expect(ended.status).toMatchObject({
      code: 16,
      details: [
        {
          '@type': 'type.googleapis.com/google.rpc.ErrorInfo',
          reason: 'SESSION_INVALID',
          domain: 'otpauth',
        },
      ],
    })
  })
})
