import { readFileSync } from 'node:fs'
import { Server, type ServerOptions, type UntypedServiceImplementation } from '@grpc/grpc-js'
import { ReflectionService } from '@grpc/reflection'
import { BinaryReader } from '@bufbuild/protobuf/wire'
import { HealthImplementation } from 'grpc-health-check'
import type { Logger } from 'pino'
import type { TrustedProxies } from '../auth/client-address.js'
import { OtpAuthService, type OtpAuthServer } from '../../gen/otpauth/v1/otpauth.js'
import type { GatewayPass } from './gateway-pass.js'
import type { OtpAuthHandlers } from './handlers.js'
import type { RpcObserver } from './rpc-observer.js'
import { tolerant, unary } from './unary.js'

export const SERVICE_NAME = 'otpauth.v1.OtpAuth'
const HEALTH_SERVICE_NAME = 'grpc.health.v1.Health'

// Written by `npm run generate` (buf build); the same relative path from src/rpc and dist/src/rpc.
const DESCRIPTOR_SET_URL = new URL('../../gen/otpauth.binpb', import.meta.url)

export interface ServerDeps {
  handlers: OtpAuthHandlers
  log: Logger
  trustedProxies: TrustedProxies
  maxMessageBytes: number
  connection: { idleMs: number; maxAgeMs: number; graceMs: number }
  gatewayPass?: GatewayPass | undefined
  observer?: RpcObserver | undefined
  /** Resolves once the writes made so far are durable; answers wait for it. */
  settled?: (() => Promise<void>) | undefined
}

export interface OtpAuthGrpcServer {
  server: Server
  health: HealthImplementation
}

/** createServer builds the grpc-js server: OtpAuth, health and reflection (v1 and v1alpha). */
export function createServer(deps: ServerDeps): OtpAuthGrpcServer {
  const options: ServerOptions = {
    'grpc.max_receive_message_length': deps.maxMessageBytes,
    // Answers are ours and bounded; reflection answers (a file and its imports) exceed 16 KiB.
    'grpc.max_send_message_length': 4 * 1024 * 1024,
    'grpc.max_concurrent_streams': 1000,
    'grpc.enable_channelz': 0,
    // grpc-js keeps connections forever by default: idle ones (and sockets that never speak
    // HTTP/2) pile up, and a stream stalled half way through a message is held with its buffer.
    'grpc.max_connection_idle_ms': deps.connection.idleMs,
    'grpc.max_connection_age_ms': deps.connection.maxAgeMs,
    'grpc.max_connection_age_grace_ms': deps.connection.graceMs,
  }
  const server = new Server(options)

  const adapt = {
    log: deps.log,
    trustedProxies: deps.trustedProxies,
    gatewayPass: deps.gatewayPass,
    observer: deps.observer,
    settled: deps.settled,
  }
  const h = deps.handlers
  const implementation: OtpAuthServer = {
    register: unary('Register', h.register, adapt),
    verifyOtp: unary('VerifyOtp', h.verifyOtp, adapt),
    requestLoginCode: unary('RequestLoginCode', h.requestLoginCode, adapt),
    login: unary('Login', h.login, adapt),
    // Every request of every backend may ask: its OK lines would swamp the log, so they are
    // debug (the metrics count them); its refusals stay info, to show token probing.
    validateSession: unary('ValidateSession', h.validateSession, { ...adapt, okLevel: 'debug' }),
    logout: unary('Logout', h.logout, adapt),
    changePassword: unary('ChangePassword', h.changePassword, adapt),
    listSessions: unary('ListSessions', h.listSessions, adapt),
    revokeSession: unary('RevokeSession', h.revokeSession, adapt),
    requestPhoneChange: unary('RequestPhoneChange', h.requestPhoneChange, adapt),
    changePhoneNumber: unary('ChangePhoneNumber', h.changePhoneNumber, adapt),
    deleteAccount: unary('DeleteAccount', h.deleteAccount, adapt),
    addEmail: unary('AddEmail', h.addEmail, adapt),
    verifyEmail: unary('VerifyEmail', h.verifyEmail, adapt),
  }
  // Undecodable requests reach the adapter, which answers INVALID_ARGUMENT (see tolerant).
  const definition = Object.fromEntries(
    Object.entries(OtpAuthService).map(([name, m]) => [
      name,
      { ...m, requestDeserialize: tolerant<unknown>(m.requestDeserialize) },
    ]),
  ) as unknown as typeof OtpAuthService
  server.addService(definition, implementation satisfies UntypedServiceImplementation)

  const health = new HealthImplementation({ '': 'SERVING', [SERVICE_NAME]: 'SERVING' })
  health.addToServer(server)

  // Reflection gets the real file descriptors from buf: @grpc/reflection over proto-loader serves
  // descriptors without dependencies, which grpcurl cannot resolve (grpc-node #3018, #3034).
  const files = splitDescriptorSet(readFileSync(DESCRIPTOR_SET_URL))
  const reflection = new ReflectionService(
    { descriptors: { fileDescriptorProtos: files } } as unknown as ConstructorParameters<
      typeof ReflectionService
    >[0],
    { services: [SERVICE_NAME, HEALTH_SERVICE_NAME] },
  )
  reflection.addToServer(server)

  return { server, health }
}

/** splitDescriptorSet cuts a FileDescriptorSet into its files without re-encoding them. */
function splitDescriptorSet(bytes: Uint8Array): Uint8Array[] {
  const reader = new BinaryReader(bytes)
  const files: Uint8Array[] = []
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag()
    if (field === 1) files.push(reader.bytes())
    else reader.skip(wireType)
  }
  return files
}
