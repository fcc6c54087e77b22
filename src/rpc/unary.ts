import type { handleUnaryCall, ServerUnaryCall, sendUnaryData } from '@grpc/grpc-js'
import type { Logger } from 'pino'
import { AuthError } from '../auth/auth-error.js'
import type { Caller } from '../auth/auth-service.js'
import { clientKey, resolveClientAddress, type TrustedProxies } from '../auth/client-address.js'
import type { GatewayPass } from './gateway-pass.js'
import type { RpcObserver } from './rpc-observer.js'
import { toServiceError } from './status.js'

/** CallContext is what a handler knows about the call besides its request. */
export interface CallContext {
  caller: Caller
}

export type UnaryHandler<Req, Res> = (request: Req, context: CallContext) => Promise<Res> | Res

export interface UnaryOptions {
  log: Logger
  trustedProxies: TrustedProxies
  /** Calls from the in-process REST door carry the REST client's address under this pass. */
  gatewayPass?: GatewayPass | undefined
  observer?: RpcObserver | undefined
  /** Resolves once the writes made so far are durable (group commit); answers wait for it. */
  settled?: (() => Promise<void>) | undefined
  /** The level of the OK line (default info); failures always log at info or error. */
  okLevel?: 'info' | 'debug'
}

const NOTHING_PENDING = (): Promise<void> => Promise.resolve()

/**
 * unary adapts an async handler to grpc-js: the only code that calls a grpc-js callback. A handler
 * that throws or rejects becomes a mapped status (never an unhandled rejection), and every call
 * ends in exactly one log line (at options.okLevel when OK): method, status, duration and client
 * address. Requests are never
 * logged, so codes, passwords and tokens cannot reach the log.
 */
export function unary<Req, Res>(
  method: string,
  handler: UnaryHandler<Req, Res>,
  options: UnaryOptions,
): handleUnaryCall<Req, Res> {
  // The OK line holds only the fields below, never request data, so it skips the redaction pass
  // (half of a log line's cost, ~3 µs a call); failure lines carry an error and keep it.
  const accessLog = options.log.child({}, { redact: [] })
  const quietOk = options.okLevel === 'debug'
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
    const started = performance.now()
    const client =
      options.gatewayPass?.clientOf(call.metadata) ?? clientAddress(call, options.trustedProxies)
    options.observer?.started(method)
    const finish = (statusName: string, cause?: unknown): void => {
      const elapsed = performance.now() - started
      options.observer?.finished(method, statusName, elapsed / 1000)
      const line = {
        rpc: method,
        status: statusName,
        ms: round(elapsed),
        client,
      }
      if (cause !== undefined) options.log.error({ ...line, err: cause }, 'rpc failed')
      else if (quietOk && statusName === 'OK') accessLog.debug(line, 'rpc')
      else accessLog.info(line, 'rpc')
    }
    const settled = options.settled ?? NOTHING_PENDING
    const answerError = (thrown: unknown): void => {
      const mapped = toServiceError(thrown)
      finish(mapped.statusName, mapped.cause)
      callback(mapped.error)
    }
    // Nothing is answered before the writes it rests on are committed (failures too: a counted
    // failed try must survive a crash as surely as a session).
    const fail = (thrown: unknown): void => {
      settled().then(
        () => {
          answerError(thrown)
        },
        (commitError: unknown) => {
          answerError(commitError)
        },
      )
    }
    try {
      if (call.request instanceof MalformedRequest) throw new AuthError('MALFORMED_REQUEST')
      Promise.resolve(handler(call.request, { caller: { clientKey: clientKey(client) } })).then(
        (response) => {
          settled().then(
            () => {
              finish('OK')
              callback(null, response)
            },
            (commitError: unknown) => {
              answerError(commitError)
            },
          )
        },
        fail,
      )
    } catch (thrown) {
      fail(thrown)
    }
  }
}

/** MalformedRequest stands in for a request whose bytes are not a valid protobuf message. */
export class MalformedRequest {
  constructor(readonly cause: unknown) {}
}

/**
 * tolerant wraps a request deserializer so that undecodable bytes reach the adapter as a
 * MalformedRequest and are answered INVALID_ARGUMENT with an ErrorInfo, and logged. Left to
 * grpc-js they become INTERNAL "Error deserializing request": no details, no log line, and a
 * status that reads as a server fault, so garbage from any client would page the operator.
 */
export function tolerant<T>(deserialize: (bytes: Buffer) => T): (bytes: Buffer) => T {
  return (bytes) => {
    try {
      return deserialize(bytes)
    } catch (cause) {
      return new MalformedRequest(cause) as T
    }
  }
}

function clientAddress(call: ServerUnaryCall<unknown, unknown>, trusted: TrustedProxies): string {
  const peer = call.getPeer()
  // grpc-js writes the peer as "address:port" (IPv6 without brackets) or "unknown" (unix socket).
  const address = peer === 'unknown' ? 'local' : peer.slice(0, peer.lastIndexOf(':'))
  const forwardedFor = call.metadata.get('x-forwarded-for').map(String)
  return resolveClientAddress(address, forwardedFor, trusted)
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100
}
