import http2 from 'node:http2'
import net from 'node:net'

/** gRPC status names by code; -1 stands for a call that ended without any grpc-status. */
export const STATUS_NAMES: Readonly<Record<number, string>> = {
  [-1]: 'NO_STATUS',
  0: 'OK',
  1: 'CANCELLED',
  2: 'UNKNOWN',
  3: 'INVALID_ARGUMENT',
  4: 'DEADLINE_EXCEEDED',
  5: 'NOT_FOUND',
  6: 'ALREADY_EXISTS',
  7: 'PERMISSION_DENIED',
  8: 'RESOURCE_EXHAUSTED',
  9: 'FAILED_PRECONDITION',
  10: 'ABORTED',
  11: 'OUT_OF_RANGE',
  12: 'UNIMPLEMENTED',
  13: 'INTERNAL',
  14: 'UNAVAILABLE',
  15: 'DATA_LOSS',
  16: 'UNAUTHENTICATED',
}

export interface CallResult {
  /** grpc-status from the trailers (or a trailers-only response); -1 when none came. */
  status: number
  /** The response message without its 5-byte prefix, when asked for and present. */
  message: Buffer | undefined
}

/**
 * GrpcConnection is a lean unary gRPC client: one HTTP/2 session, the 5-byte length prefix and
 * trailers read by hand. A grpc-js client spends several times the server's CPU per call, which
 * would make the load generator the bottleneck.
 */
export class GrpcConnection {
  readonly #session: http2.ClientHttp2Session

  constructor(authority: string) {
    this.#session = http2.connect(authority, {
      settings: { enablePush: false },
      createConnection: (url: URL) =>
        net.connect({ host: url.hostname, port: Number(url.port), noDelay: true }),
    })
    this.#session.on('error', () => {
      // Each stream reports its own failure; a session error must not crash the worker.
    })
  }

  call(
    path: string,
    message: Uint8Array,
    forwardedFor: string | undefined,
    wantMessage: boolean,
  ): Promise<CallResult> {
    return new Promise((resolve) => {
      const headers: http2.OutgoingHttpHeaders = {
        ':method': 'POST',
        ':path': path,
        'content-type': 'application/grpc',
        te: 'trailers',
      }
      if (forwardedFor !== undefined) headers['x-forwarded-for'] = forwardedFor
      let status = -1
      let chunks: Buffer[] | undefined
      let settled = false
      const done = (): void => {
        if (settled) return
        settled = true
        let body: Buffer | undefined
        if (chunks !== undefined) {
          const all = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)
          if (all !== undefined && all.length >= 5) body = all.subarray(5, 5 + all.readUInt32BE(1))
        }
        resolve({ status, message: body })
      }
      let stream: http2.ClientHttp2Stream
      try {
        stream = this.#session.request(headers)
      } catch {
        resolve({ status: -1, message: undefined })
        return
      }
      stream.on('response', (h) => {
        const s = h['grpc-status']
        if (s !== undefined) status = Number(s)
      })
      stream.on('trailers', (t: http2.IncomingHttpHeaders) => {
        const s = t['grpc-status']
        if (s !== undefined) status = Number(s)
      })
      stream.on('data', (chunk: Buffer) => {
        if (wantMessage) (chunks ??= []).push(chunk)
      })
      stream.on('close', done)
      stream.on('error', done)
      const frame = Buffer.allocUnsafe(5 + message.length)
      frame[0] = 0
      frame.writeUInt32BE(message.length, 1)
      frame.set(message, 5)
      stream.end(frame)
    })
  }

  close(): void {
    this.#session.close()
  }
}

/** encodeHealthCheck is grpc.health.v1.HealthCheckRequest{service}: field 1, length-delimited. */
export function encodeHealthCheck(service: string): Uint8Array {
  const name = Buffer.from(service)
  return Buffer.concat([Buffer.from([0x0a, name.length]), name])
}

/** isServing reads HealthCheckResponse{status = SERVING (1)}: field 1 varint. */
export function isServing(message: Buffer | undefined): boolean {
  return message !== undefined && message.length >= 2 && message[0] === 0x08 && message[1] === 1
}
