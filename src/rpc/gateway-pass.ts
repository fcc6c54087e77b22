import { randomBytes, timingSafeEqual } from 'node:crypto'
import { isIP } from 'node:net'
import type { Metadata } from '@grpc/grpc-js'

const CLIENT_KEY = 'x-otpauth-gateway-client'
const SECRET_KEY = 'x-otpauth-gateway-secret'

/**
 * GatewayPass lets the in-process REST front door tell the gRPC server which address a REST call
 * came from. The door already resolved that address from its own socket (and x-forwarded-for only
 * from trusted proxies), so the server takes it as is, but only together with a random secret that
 * never leaves this process: no other caller can name its own address, whatever network it is on.
 */
export class GatewayPass {
  readonly #secret: Buffer

  constructor(secret: Buffer = randomBytes(32)) {
    this.#secret = secret
  }

  /** stamp sets the pass on metadata for a call made by the door on behalf of `client`. */
  stamp(metadata: Metadata, client: string): void {
    metadata.set(CLIENT_KEY, client)
    metadata.set(SECRET_KEY, this.#secret.toString('base64url'))
  }

  /** clientOf returns the stamped client address, or undefined when the pass is absent or wrong. */
  clientOf(metadata: Metadata): string | undefined {
    const secret = metadata.get(SECRET_KEY)[0]
    if (typeof secret !== 'string') return undefined
    const given = Buffer.from(secret, 'base64url')
    if (given.length !== this.#secret.length || !timingSafeEqual(given, this.#secret)) {
      return undefined
    }
    const client = metadata.get(CLIENT_KEY)[0]
    return typeof client === 'string' && isIP(client) !== 0 ? client : undefined
  }
}
