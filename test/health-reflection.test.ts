import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fromBinary } from '@bufbuild/protobuf'
import { FileDescriptorProtoSchema, type FileDescriptorProto } from '@bufbuild/protobuf/wkt'
import {
  credentials,
  loadPackageDefinition,
  type Client,
  type ClientDuplexStream,
  type ClientReadableStream,
  type GrpcObject,
  type ServiceClientConstructor,
  type ServiceError,
} from '@grpc/grpc-js'
import { loadSync } from '@grpc/proto-loader'
import { protoPath as healthProtoPath } from 'grpc-health-check'
import { describe, expect, it, onTestFinished } from 'vitest'
import { OTPAUTH_RPCS, startTestServer, type TestServer } from './harness.js'

const require = createRequire(import.meta.url)
// @grpc/reflection ships the reflection protos it serves; the client here loads the same files.
const REFLECTION_PROTO_DIR = join(dirname(require.resolve('@grpc/reflection')), '..', 'proto')
const LOADER_OPTIONS = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
}

function serviceClient(
  proto: string,
  includeDirs: string[],
  name: string,
): ServiceClientConstructor {
  let node: GrpcObject | ServiceClientConstructor = loadPackageDefinition(
    loadSync(proto, { ...LOADER_OPTIONS, includeDirs }),
  )
  for (const part of name.split('.')) {
    node = (node as GrpcObject)[part] as GrpcObject | ServiceClientConstructor
  }
  return node as ServiceClientConstructor
}

function connect(t: TestServer, constructor: ServiceClientConstructor): Client {
  const client = new constructor(t.address, credentials.createInsecure())
  onTestFinished(() => {
    client.close()
  })
  return client
}

// ---- health ----

interface HealthResponse {
  status: string
}

interface HealthClient extends Client {
  Check(
    request: { service: string },
    callback: (error: ServiceError | null, response?: HealthResponse) => void,
  ): void
  Watch(request: { service: string }): ClientReadableStream<HealthResponse>
}

function healthClient(t: TestServer): HealthClient {
  const Health = serviceClient(healthProtoPath, [dirname(healthProtoPath)], 'grpc.health.v1.Health')
  return connect(t, Health) as HealthClient
}

function check(client: HealthClient, service: string): Promise<string> {
  return new Promise((resolve, reject) => {
    client.Check({ service }, (error, response) => {
      if (error) reject(error)
      else resolve(response?.status ?? 'none')
    })
  })
}

// ---- reflection ----

interface ReflectionResponse {
  list_services_response?: { service: { name: string }[] }
  file_descriptor_response?: { file_descriptor_proto: Buffer[] }
  error_response?: { error_code: number; error_message: string }
}

type ReflectionRequest =
  { list_services: string } | { file_containing_symbol: string } | { file_by_filename: string }

interface ReflectionClient extends Client {
  ServerReflectionInfo(): ClientDuplexStream<ReflectionRequest, ReflectionResponse>
}

function reflectionClient(t: TestServer, version: 'v1' | 'v1alpha'): ReflectionClient {
  const Reflection = serviceClient(
    join(REFLECTION_PROTO_DIR, 'grpc', 'reflection', version, 'reflection.proto'),
    [REFLECTION_PROTO_DIR],
    `grpc.reflection.${version}.ServerReflection`,
  )
  return connect(t, Reflection) as ReflectionClient
}

/** ask sends one request on a fresh reflection stream and returns the one answer. */
function ask(client: ReflectionClient, request: ReflectionRequest): Promise<ReflectionResponse> {
  return new Promise((resolve, reject) => {
    const stream = client.ServerReflectionInfo()
    stream.once('data', (response: ReflectionResponse) => {
      resolve(response)
      stream.end()
    })
    stream.once('error', reject)
    stream.write(request)
  })
}

function files(response: ReflectionResponse): FileDescriptorProto[] {
  return (response.file_descriptor_response?.file_descriptor_proto ?? []).map((bytes) =>
    fromBinary(FileDescriptorProtoSchema, bytes),
  )
}

describe('Health', () => {
  it('when the server is up, then the whole server and otpauth.v1.OtpAuth are SERVING', async () => {
    const t = await startTestServer()
    const client = healthClient(t)

    expect(await check(client, '')).toBe('SERVING')
    expect(await check(client, 'otpauth.v1.OtpAuth')).toBe('SERVING')
  })

  it('when an unknown service is checked, then NOT_FOUND', async () => {
    const t = await startTestServer()
    const client = healthClient(t)

    const err = await check(client, 'no.such.Service').catch((e: unknown) => e as ServiceError)

    expect((err as ServiceError).code).toBe(5) // NOT_FOUND
  })

  it('when stop() has begun, then watchers see NOT_SERVING before the server goes away', async () => {
    const t = await startTestServer()
    const client = healthClient(t)
    const seen: Record<string, string[]> = { '': [], 'otpauth.v1.OtpAuth': [] }
    const watches = Object.keys(seen).map((service) => {
      const stream = client.Watch({ service })
      stream.on('error', () => {
        // Cancelled below, or cut by the shutdown: both are expected here.
      })
      return new Promise<ClientReadableStream<HealthResponse>>((resolve) => {
        stream.on('data', (response: HealthResponse) => {
          seen[service]?.push(response.status)
          if (response.status === 'SERVING') resolve(stream)
        })
      })
    })
    const streams = await Promise.all(watches)

    const stopping = t.app.stop()
    await new Promise<void>((resolve) => {
      const poll = setInterval(() => {
        if (Object.values(seen).every((s) => s.includes('NOT_SERVING'))) {
          clearInterval(poll)
          resolve()
        }
      }, 5)
    })
    for (const stream of streams) stream.cancel()
    await stopping

    expect(seen).toEqual({
      '': ['SERVING', 'NOT_SERVING'],
      'otpauth.v1.OtpAuth': ['SERVING', 'NOT_SERVING'],
    })
  })
})

describe('Server reflection', () => {
  for (const version of ['v1', 'v1alpha'] as const) {
    it(`when ${version} lists services, then otpauth.v1.OtpAuth and grpc.health.v1.Health are there`, async () => {
      const t = await startTestServer()

      const res = await ask(reflectionClient(t, version), { list_services: '*' })

      const names = (res.list_services_response?.service ?? []).map((s) => s.name)
      expect(names).toEqual(expect.arrayContaining(['otpauth.v1.OtpAuth', 'grpc.health.v1.Health']))
    })

    it(`when ${version} is asked for the file containing the service, then it is the real otpauth/v1/otpauth.proto with its imports`, async () => {
      const t = await startTestServer()

      const res = await ask(reflectionClient(t, version), {
        file_containing_symbol: 'otpauth.v1.OtpAuth',
      })

      const found = files(res)
      const main = found.find((f) => f.name === 'otpauth/v1/otpauth.proto')
      expect(main?.package).toBe('otpauth.v1')
      expect(main?.dependency).toEqual(
        expect.arrayContaining(['google/protobuf/timestamp.proto', 'google/api/annotations.proto']),
      )
      expect(main?.service.map((s) => s.name)).toEqual(['OtpAuth'])
      expect(main?.service[0]?.method.map((m) => m.name)).toEqual(OTPAUTH_RPCS)
      const login = main?.messageType.find((m) => m.name === 'LoginRequest')
      expect(login?.field.map((f) => [f.name, f.number])).toEqual([
        ['phone_number', 1],
        ['password', 2],
        ['code', 3],
      ])
    })

    it(`when ${version} is asked for every import by name, then each resolves to a real file`, async () => {
      const t = await startTestServer()
      const client = reflectionClient(t, version)
      const main = files(
        await ask(client, { file_containing_symbol: 'otpauth.v1.LoginRequest' }),
      ).find((f) => f.name === 'otpauth/v1/otpauth.proto')

      for (const dependency of main?.dependency ?? []) {
        const res = await ask(client, { file_by_filename: dependency })
        expect(res.error_response, dependency).toBeUndefined()
        expect(
          files(res).map((f) => f.name),
          dependency,
        ).toContain(dependency)
      }
      expect(main?.dependency.length).toBeGreaterThanOrEqual(2)
    })

    it(`when ${version} is asked for the health service's file, then it is served too`, async () => {
      const t = await startTestServer()

      const res = await ask(reflectionClient(t, version), {
        file_containing_symbol: 'grpc.health.v1.Health',
      })

      const health = files(res).find((f) => f.service.some((s) => s.name === 'Health'))
      expect(health?.package).toBe('grpc.health.v1')
    })
  }
})
