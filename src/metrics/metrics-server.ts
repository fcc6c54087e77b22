import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Registry } from 'prom-client'

/** MetricsServer answers GET /metrics with the registry in Prometheus text format. */
export class MetricsServer {
  readonly #server: Server

  constructor(registry: Registry) {
    this.#server = createServer((req, res) => {
      const path = new URL(req.url ?? '/', 'http://metrics').pathname
      if (req.method !== 'GET' || path !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n')
        return
      }
      registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
        (error: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(String(error)),
      )
    })
  }

  /** listen binds host:port and returns the port actually bound. */
  listen(address: string): Promise<number> {
    const split = address.lastIndexOf(':')
    const host = address.slice(0, split).replace(/^\[(.*)\]$/, '$1')
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject)
      this.#server.listen({ host, port: Number(address.slice(split + 1)) }, () => {
        this.#server.off('error', reject)
        resolve((this.#server.address() as AddressInfo).port)
      })
    })
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#server.close(() => {
        resolve()
      })
      this.#server.closeAllConnections()
    })
  }
}
