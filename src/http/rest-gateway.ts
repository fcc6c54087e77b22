import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import {
  fromBinary,
  fromJson,
  ScalarType,
  toBinary,
  toJson,
  type DescField,
  type DescMessage,
  type FileRegistry,
  type JsonObject,
  type JsonValue,
} from '@bufbuild/protobuf'
import { Client, credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js'
import type { Logger } from 'pino'
import { resolveClientAddress, type TrustedProxies } from '../auth/client-address.js'
import type { GatewayPass } from '../rpc/gateway-pass.js'
import { httpRoutes, type HttpRoute } from './http-rules.js'
import { httpStatusOf } from './http-status.js'

export interface RestGatewayOptions {
  /** The gRPC server to call, such as 127.0.0.1:50051. */
  target: string
  registry: FileRegistry
  /** Fully-qualified services whose google.api.http rules are served. */
  services: readonly string[]
  /** Whose X-Forwarded-For the door believes (the same list, and rule, as the gRPC server). */
  trustedProxies: TrustedProxies
  pass: GatewayPass
  maxBodyBytes: number
  /** Deadline of each gRPC call. */
  timeoutMs: number
  log: Logger
}

// Output as the original REST API wrote it: proto field names (snake_case), zero values included.
const JSON_WRITE = { useProtoFieldName: true, alwaysEmitImplicit: true } as const

/** A failure the door answers itself, before or instead of a gRPC call. */
class DoorError extends Error {
  constructor(
    readonly httpStatus: number,
    readonly code: status,
    message: string,
  ) {
    super(message)
  }
}

/**
 * RestGateway is a small REST front door driven only by the google.api.http rules in the
 * descriptor set: it transcodes proto3 JSON to a gRPC call over a real connection, and the answer
 * or google.rpc.Status back, with Envoy's status mapping. The caller's address is resolved here,
 * from the HTTP socket (X-Forwarded-For only from trusted proxies), and handed to the gRPC server
 * under the GatewayPass, so limits and lockouts see the REST client exactly as over gRPC.
 */
export class RestGateway {
  readonly #options: RestGatewayOptions
  readonly #routes: HttpRoute[]
  readonly #client: Client
  readonly #server: Server
  readonly #statusSchema: DescMessage
  readonly #retryInfoType = 'type.googleapis.com/google.rpc.RetryInfo'

  constructor(options: RestGatewayOptions) {
    this.#options = options
    this.#routes = httpRoutes(options.registry, options.services)
    const statusSchema = options.registry.getMessage('google.rpc.Status')
    if (statusSchema === undefined)
      throw new Error('google.rpc.Status is not in the descriptor set')
    this.#statusSchema = statusSchema
    this.#client = new Client(options.target, credentials.createInsecure(), {
      'grpc.max_send_message_length': options.maxBodyBytes,
    })
    this.#server = createServer((req, res) => {
      this.#handle(req, res).catch((error: unknown) => {
        options.log.error({ err: error }, 'REST door failed')
        this.#reply(res, 500, { code: status.INTERNAL, message: 'internal error', details: [] })
      })
    })
    this.#server.requestTimeout = 30_000
    this.#server.headersTimeout = 10_000
  }

  /** routes lists what is served, for logs and tests. */
  get routes(): readonly HttpRoute[] {
    return this.#routes
  }

  /** listen binds host:port and returns the port actually bound. */
  listen(address: string): Promise<number> {
    const split = address.lastIndexOf(':')
    const host = address.slice(0, split).replace(/^\[(.*)\]$/, '$1')
    const port = Number(address.slice(split + 1))
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject)
      this.#server.listen({ host, port }, () => {
        this.#server.off('error', reject)
        resolve((this.#server.address() as AddressInfo).port)
      })
    })
  }

  /** stopAccepting closes the listener; requests in flight still finish. */
  stopAccepting(): Promise<void> {
    return new Promise((resolve) => {
      this.#server.close(() => {
        resolve()
      })
      this.#server.closeIdleConnections()
    })
  }

  /** close ends every connection and the gRPC channel. */
  close(): void {
    this.#server.closeAllConnections()
    this.#client.close()
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://door').pathname
    const matching = this.#routes.flatMap((route) => {
      const variables = route.match(path)
      return variables === undefined ? [] : [{ route, variables }]
    })
    const found = matching.find((m) => m.route.httpMethod === req.method)
    try {
      if (matching.length === 0) {
        throw new DoorError(404, status.NOT_FOUND, `no method is bound to ${path}`)
      }
      if (found === undefined) {
        res.setHeader('allow', [...new Set(matching.map((m) => m.route.httpMethod))].join(', '))
        throw new DoorError(
          405,
          status.UNIMPLEMENTED,
          `${String(req.method)} is not bound to ${path}`,
        )
      }
      const body = await readBody(req, this.#options.maxBodyBytes)
      const request = this.#buildRequest(found.route, found.variables, req, body)
      await this.#call(found.route, request, req, res)
    } catch (error) {
      if (!(error instanceof DoorError)) throw error
      this.#reply(res, error.httpStatus, { code: error.code, message: error.message, details: [] })
    }
  }

  #buildRequest(
    route: HttpRoute,
    variables: Map<string, string>,
    req: IncomingMessage,
    body: Buffer,
  ): Uint8Array {
    const schema = route.method.input
    let json: JsonObject = {}
    if (route.body !== '' && body.length > 0) {
      const type = req.headers['content-type'] ?? 'application/json'
      if (!/^application\/json\b/i.test(type)) {
        throw new DoorError(415, status.INVALID_ARGUMENT, 'the body must be application/json')
      }
      let parsed: JsonValue
      try {
        parsed = JSON.parse(body.toString('utf8')) as JsonValue
      } catch (error) {
        throw new DoorError(
          400,
          status.INVALID_ARGUMENT,
          `invalid JSON: ${(error as Error).message}`,
        )
      }
      if (route.body === '*') {
        if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
          throw new DoorError(400, status.INVALID_ARGUMENT, 'the body must be a JSON object')
        }
        json = parsed
      } else {
        json[route.body] = parsed
      }
    }
    // Everything not bound to the path or the body comes from the query (not with body "*").
    if (route.body !== '*') {
      const query = new URL(req.url ?? '/', 'http://door').searchParams
      for (const [name, value] of query) setField(json, schema, name, value, true)
    }
    for (const [name, value] of variables) setField(json, schema, name, value, false)
    try {
      return toBinary(schema, fromJson(schema, json, { registry: this.#options.registry }))
    } catch (error) {
      throw new DoorError(400, status.INVALID_ARGUMENT, (error as Error).message)
    }
  }

  #call(
    route: HttpRoute,
    request: Uint8Array,
    req: IncomingMessage,
    res: ServerResponse,
  ): Promise<void> {
    const { registry, trustedProxies, pass, timeoutMs } = this.#options
    const forwardedFor = req.headers['x-forwarded-for']
    const client = resolveClientAddress(
      req.socket.remoteAddress ?? 'local',
      forwardedFor === undefined ? [] : [forwardedFor].flat(),
      trustedProxies,
    )
    const metadata = new Metadata()
    pass.stamp(metadata, client)
    const path = `/${route.method.parent.typeName}/${route.method.name}`
    const identity = (b: Buffer): Buffer => b
    return new Promise((resolve) => {
      const call = this.#client.makeUnaryRequest<Buffer, Buffer>(
        path,
        identity,
        identity,
        Buffer.from(request),
        metadata,
        { deadline: Date.now() + timeoutMs },
        (error, response) => {
          if (error) this.#replyError(res, error)
          else {
            const output = route.method.output
            const message = fromBinary(output, response ?? Buffer.alloc(0))
            let json = toJson(output, message, { ...JSON_WRITE, registry })
            if (route.responseBody !== '' && json !== null && typeof json === 'object') {
              json = (json as JsonObject)[route.responseBody] ?? null
            }
            this.#reply(res, 200, json)
          }
          resolve()
        },
      )
      // A REST client that goes away cancels its gRPC call.
      res.on('close', () => {
        if (!res.writableFinished) call.cancel()
      })
    })
  }

  #replyError(res: ServerResponse, error: ServiceError): void {
    const raw = error.metadata.get('grpc-status-details-bin')[0]
    let body: JsonValue = { code: error.code, message: error.details, details: [] }
    if (raw instanceof Buffer) {
      try {
        const decoded = fromBinary(this.#statusSchema, raw)
        body = toJson(this.#statusSchema, decoded, {
          ...JSON_WRITE,
          registry: this.#options.registry,
        })
      } catch (cause) {
        this.#options.log.warn({ err: cause }, 'undecodable grpc-status-details-bin')
      }
    }
    const retryAfter = retryAfterSeconds(body, this.#retryInfoType)
    if (retryAfter !== undefined) res.setHeader('retry-after', String(retryAfter))
    this.#reply(res, httpStatusOf(error.code), body)
  }

  #reply(res: ServerResponse, httpStatus: number, body: JsonValue): void {
    if (res.headersSent || res.destroyed) return
    const text = JSON.stringify(body)
    res.writeHead(httpStatus, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(text),
    })
    res.end(text)
  }
}

/** readBody collects the body, refusing more than `max` bytes (413) before reading it all. */
function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  const tooLarge = (): DoorError =>
    new DoorError(413, status.RESOURCE_EXHAUSTED, `request body larger than ${max} bytes`)
  if (Number(req.headers['content-length'] ?? 0) > max) {
    req.resume()
    return Promise.reject(tooLarge())
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    const onData = (chunk: Buffer): void => {
      size += chunk.length
      if (size > max) {
        req.off('data', onData)
        req.resume()
        reject(tooLarge())
      } else chunks.push(chunk)
    }
    req.on('data', onData)
    req.on('end', () => {
      resolve(Buffer.concat(chunks))
    })
    req.on('error', reject)
  })
}

/**
 * setField puts a path variable or query parameter ("a.b") into the JSON request. Query values
 * for bool fields become booleans, and repeated fields collect every value.
 */
function setField(
  json: JsonObject,
  schema: DescMessage,
  fieldPath: string,
  value: string,
  fromQuery: boolean,
): void {
  const names = fieldPath.split('.')
  let target = json
  let message: DescMessage | undefined = schema
  for (const [i, name] of names.entries()) {
    const field: DescField | undefined = message?.fields.find(
      (f) => f.name === name || f.jsonName === name,
    )
    const last = i === names.length - 1
    if (!last) {
      const next = target[name]
      const child: JsonObject =
        next !== null && typeof next === 'object' && !Array.isArray(next) ? next : {}
      target[name] = child
      target = child
      message = field?.message
      continue
    }
    const typed: JsonValue =
      fromQuery && field?.scalar === ScalarType.BOOL && (value === 'true' || value === 'false')
        ? value === 'true'
        : value
    if (field?.fieldKind === 'list') {
      const list = target[name]
      target[name] = Array.isArray(list) ? [...list, typed] : [typed]
    } else {
      target[name] = typed
    }
  }
}

/** retryAfterSeconds reads RetryInfo.retry_delay ("12.5s") from a Status JSON, rounded up. */
function retryAfterSeconds(body: JsonValue, retryInfoType: string): number | undefined {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return undefined
  const details = body['details']
  if (!Array.isArray(details)) return undefined
  for (const detail of details) {
    if (detail === null || typeof detail !== 'object' || Array.isArray(detail)) continue
    if (detail['@type'] !== retryInfoType) continue
    const delay = detail['retry_delay']
    if (typeof delay === 'string' && /^\d+(\.\d+)?s$/.test(delay)) {
      return Math.ceil(Number(delay.slice(0, -1)))
    }
  }
  return undefined
}
