import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { indexOfPhone, storeCode } from './phones.js'

export interface SmsSink {
  url: string
  received(): number
  close(): Promise<void>
}

/**
 * startSmsSink is the local SMS gateway the webhook sender posts to: keep-alive HTTP that answers
 * 204 at once and files each code in the shared table for the load workers.
 */
export async function startSmsSink(codes: Int32Array): Promise<SmsSink> {
  let received = 0
  const server = http.createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      try {
        const body = JSON.parse(Buffer.concat(chunks).toString()) as {
          phone_number?: string
          code?: string
        }
        const index = indexOfPhone(body.phone_number ?? '')
        if (index >= 0 && body.code !== undefined) storeCode(codes, index, body.code)
        received += 1
        res.writeHead(204).end()
      } catch {
        res.writeHead(400).end()
      }
    })
  })
  server.keepAliveTimeout = 60_000
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}/sms`,
    received: () => received,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => {
          resolve()
        })
      }),
  }
}
