/** Shared by the SMTP tests: a real SMTP server on loopback and readers for what it received. */
import type { AddressInfo, Socket } from 'node:net'
import { SMTPServer, type SMTPServerOptions } from 'smtp-server'
import { onTestFinished } from 'vitest'

export const SMTP_USER = 'otpauth@example.com'
// Every character that needs percent-encoding in a URL, so the tests also prove the decoding.
export const SMTP_PASSWORD = 'pa:ss/w@rd%?# s3cret'

/** Every spelling of an SMTP password an error or a log line could leak. */
export function secretForms(password: string): string[] {
  return [
    password,
    encodeURIComponent(password),
    Buffer.from(password).toString('base64'),
    Buffer.from(`\u0000${SMTP_USER}\u0000${password}`).toString('base64'),
  ]
}

/** smtpUrl is the sender's URL for a loopback server, credentials included. */
export function smtpUrl(port: number, password = SMTP_PASSWORD, scheme = 'smtp'): URL {
  return new URL(
    `${scheme}://${encodeURIComponent(SMTP_USER)}:${encodeURIComponent(password)}@127.0.0.1:${port}`,
  )
}

export interface Received {
  mailFrom: string | undefined
  rcptTo: string[]
  raw: string
}

/**
 * A real SMTP server on loopback: AUTH PLAIN/LOGIN against SMTP_USER and PASSWORD, no TLS (so the
 * sender, on loopback, needs no test-only option), every accepted message kept. `options`
 * replaces any handler to make the server misbehave.
 */
export async function startSmtpServer(options: Partial<SMTPServerOptions> = {}) {
  const received: Received[] = []
  const authMethods: string[] = []
  const sockets = new Set<Socket>()
  let connections = 0
  let closed = 0
  const server = new SMTPServer({
    authMethods: ['PLAIN', 'LOGIN'],
    allowInsecureAuth: true,
    disabledCommands: ['STARTTLS'],
    disableReverseLookup: true,
    logger: false,
    onConnect(_session, callback) {
      connections += 1
      callback()
    },
    onClose() {
      closed += 1
    },
    onAuth(auth, _session, callback) {
      authMethods.push(auth.method)
      if (auth.username === SMTP_USER && auth.password === SMTP_PASSWORD) {
        callback(null, { user: SMTP_USER })
      } else {
        callback(smtpError(535, '5.7.8 Authentication credentials invalid'))
      }
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = []
      stream.on('data', (chunk: Buffer) => chunks.push(chunk))
      stream.on('end', () => {
        const mailFrom = session.envelope.mailFrom
        received.push({
          mailFrom: mailFrom === false ? undefined : mailFrom.address,
          rcptTo: session.envelope.rcptTo.map((a) => a.address),
          raw: Buffer.concat(chunks).toString('utf8'),
        })
        callback(null, 'queued')
      })
    },
    ...options,
  })
  // A client that gives up mid-handshake is an 'error' on the server; the tests cause those.
  server.on('error', () => undefined)
  if (options.secure !== true) {
    // Not under TLS: destroying the socket beneath a TLS socket smtp-server is closing kills
    // the test process (Node 20).
    server.server.on('connection', (socket: Socket) => {
      sockets.add(socket)
      socket.on('close', () => sockets.delete(socket))
    })
  }
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.server.address() as AddressInfo).port
  onTestFinished(async () => {
    for (const socket of sockets) socket.destroy()
    await new Promise<void>((resolve) => {
      server.close(resolve)
    })
  })
  return {
    received,
    authMethods,
    port,
    get connections() {
      return connections
    },
    get closed() {
      return closed
    },
    /** dropClient cuts the connection of the client at `remotePort` without an answer. */
    dropClient(remotePort: number) {
      for (const socket of sockets) if (socket.remotePort === remotePort) socket.destroy()
    },
    url(scheme = 'smtp', password = SMTP_PASSWORD) {
      return smtpUrl(port, password, scheme)
    },
  }
}

export function smtpError(responseCode: number, message: string): Error {
  return Object.assign(new Error(message), { responseCode })
}

/** The raw message's header, unfolded. */
export function headerOf(raw: string, name: string): string | undefined {
  const head = raw.slice(0, raw.indexOf('\r\n\r\n')).replace(/\r\n[ \t]+/g, ' ')
  return new RegExp(`^${name}: (.*)$`, 'im').exec(head)?.[1]
}

/** The decoded body of the multipart/alternative part of the given type. */
export function bodyOf(raw: string, type: 'text/plain' | 'text/html'): string {
  const boundary = /boundary="?([^";\r\n]+)"?/i.exec(raw)?.[1]
  if (boundary === undefined) throw new Error('not a multipart message')
  const part = raw.split(`--${boundary}`).find((p) => p.includes(`Content-Type: ${type}`))
  if (part === undefined) throw new Error(`no ${type} part`)
  const split = part.indexOf('\r\n\r\n')
  const head = part.slice(0, split)
  const body = part.slice(split + 4)
  const encoding = /Content-Transfer-Encoding: (\S+)/i.exec(head)?.[1]?.toLowerCase()
  if (encoding === 'base64') return Buffer.from(body, 'base64').toString('utf8')
  if (encoding === 'quoted-printable') {
    return body
      .replace(/=\r\n/g, '')
      .replace(/=([0-9A-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)))
      .trim()
  }
  return body.trim()
}
