/**
 * Support for the issue-4 suites (hostile-*, attack-*, crash-*, fault-*): a private build of the
 * server to run as a child process, a local SMS webhook sink, raw gRPC framing and a guard that
 * fails the test when anything in this process rejects or throws unhandled.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import {
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join, resolve } from 'node:path'
import { onTestFinished } from 'vitest'

export const ROOT = resolve(import.meta.dirname, '..')

/**
 * UnhandledGuard records every unhandledRejection and uncaughtException while a test runs. The
 * server runs in the test's process, so a handler that lets a promise reject unhandled shows here.
 */
export class UnhandledGuard {
  readonly seen: unknown[] = []
  readonly #onError = (error: unknown): void => {
    this.seen.push(error)
  }

  constructor() {
    process.on('unhandledRejection', this.#onError)
    process.on('uncaughtException', this.#onError)
    onTestFinished(() => {
      process.off('unhandledRejection', this.#onError)
      process.off('uncaughtException', this.#onError)
    })
  }
}

/** frame wraps a message in gRPC's 5-byte length prefix (uncompressed). */
export function frame(message: Uint8Array, compressed = false): Buffer {
  const header = Buffer.alloc(5)
  header.writeUInt8(compressed ? 1 : 0, 0)
  header.writeUInt32BE(message.length, 1)
  return Buffer.concat([header, message])
}

/** Protobuf wire pieces for hand-built requests (unknown fields, invalid UTF-8, wrong types). */
export const wire = {
  varint(value: number): Buffer {
    const bytes: number[] = []
    let v = value
    while (v > 0x7f) {
      bytes.push((v & 0x7f) | 0x80)
      v = Math.floor(v / 128)
    }
    bytes.push(v)
    return Buffer.from(bytes)
  },
  tag(field: number, wireType: number): Buffer {
    return wire.varint(field * 8 + wireType)
  },
  bytes(field: number, value: Uint8Array | string): Buffer {
    const data = typeof value === 'string' ? Buffer.from(value) : Buffer.from(value)
    return Buffer.concat([wire.tag(field, 2), wire.varint(data.length), data])
  },
  uint(field: number, value: number): Buffer {
    return Buffer.concat([wire.tag(field, 0), wire.varint(value)])
  },
  fixed64(field: number): Buffer {
    return Buffer.concat([wire.tag(field, 1), Buffer.alloc(8, 0xab)])
  },
  fixed32(field: number): Buffer {
    return Buffer.concat([wire.tag(field, 5), Buffer.alloc(4, 0xcd)])
  },
}

/** SmsSink is a local HTTP server standing in for the SMS provider's webhook. */
export interface SmsSink {
  url: string
  received: { phone_number: string; code: string; purpose: string; message: string }[]
  /** How the next requests are answered; default 204. */
  mode: 'ok' | 'error500' | 'slow' | 'reset'
  /** In mode ok, how long to wait before answering. */
  delayMs: number
  /** Connections the sink has open right now. */
  openConnections(): number
  lastCode(phone: string, purpose?: string): string
  close(): Promise<void>
}

export async function startSmsSink(): Promise<SmsSink> {
  const received: SmsSink['received'] = []
  const sockets = new Set<import('node:net').Socket>()
  const sink: { mode: SmsSink['mode']; delayMs: number } = { mode: 'ok', delayMs: 0 }
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      switch (sink.mode) {
        case 'reset':
          req.socket.destroy()
          return
        case 'slow':
          // Never answers; the sender's timeout must fire. Closed with the sink.
          return
        case 'error500':
          res.writeHead(500).end('provider error')
          return
        case 'ok':
          received.push(JSON.parse(Buffer.concat(chunks).toString()) as SmsSink['received'][0])
          setTimeout(() => res.writeHead(204).end(), sink.delayMs)
      }
    })
  })
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok))
  const port = (server.address() as AddressInfo).port
  const result: SmsSink = {
    url: `http://127.0.0.1:${port}/sms`,
    received,
    get mode() {
      return sink.mode
    },
    set mode(m) {
      sink.mode = m
    },
    get delayMs() {
      return sink.delayMs
    },
    set delayMs(ms) {
      sink.delayMs = ms
    },
    openConnections: () => sockets.size,
    lastCode(phone, purpose) {
      const found = received.filter(
        (r) => r.phone_number === phone && (purpose === undefined || r.purpose === purpose),
      )
      const last = found.at(-1)
      if (last === undefined) throw new Error(`the sink got no SMS for ${phone}`)
      return last.code
    },
    close: () =>
      new Promise<void>((ok) => {
        for (const s of sockets) s.destroy()
        server.close(() => {
          ok()
        })
      }),
  }
  onTestFinished(() => result.close())
  return result
}

function treeHash(dirs: string[]): string {
  const hash = createHash('sha256')
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name)
      if (statSync(path).isDirectory()) walk(path)
      else hash.update(path).update(readFileSync(path))
    }
  }
  for (const d of dirs) walk(join(ROOT, d))
  return hash.digest('hex').slice(0, 16)
}

/**
 * buildServer compiles src/ and gen/ into a private directory (keyed by their content, reused when
 * unchanged) and returns the path of main.js. Private so that another engineer's `npm run build`
 * in the shared tree cannot swap dist/ under a running test.
 */
export function buildServer(): string {
  const cacheRoot = join(ROOT, 'node_modules', '.cache')
  const out = join(cacheRoot, `otpauth-hostile-${treeHash(['src', 'gen'])}`)
  const main = join(out, 'src', 'main.js')
  if (existsSync(join(out, 'done'))) return main
  const staging = `${out}.${process.pid}.${Date.now()}`
  mkdirSync(staging, { recursive: true })
  execFileSync(
    process.execPath,
    [
      join(ROOT, 'node_modules/typescript/bin/tsc'),
      '-p',
      'tsconfig.build.json',
      '--outDir',
      staging,
    ],
    { cwd: ROOT, stdio: 'pipe' },
  )
  cpSync(join(ROOT, 'gen/otpauth.binpb'), join(staging, 'gen/otpauth.binpb'))
  // Under node_modules the nearest package.json is not the project's: say ESM here.
  writeFileSync(join(staging, 'package.json'), '{"type":"module"}\n')
  writeFileSync(join(staging, 'done'), '')
  try {
    renameSync(staging, out)
  } catch {
    // Another worker finished the same build first; theirs is identical.
    rmSync(staging, { recursive: true, force: true })
  }
  return main
}

export interface ChildServer {
  child: ChildProcess
  port: number
  address: string
  /** Every stdout line so far (pino JSON). */
  lines: string[]
  stderr(): string
  /** exited resolves with the exit code (or the signal name). */
  exited: Promise<number | string>
}

/**
 * spawnServer runs the built main.js with the given environment and waits for its
 * "otpauth listening on host:port" line. Rejects with stderr when the process exits first, and
 * kills it when it does not listen in time.
 */
export async function spawnServer(
  main: string,
  env: Record<string, string>,
  timeoutMs = 15_000,
): Promise<ChildServer> {
  const child = spawn(process.execPath, [main], {
    env: { PATH: process.env['PATH'] ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const lines: string[] = []
  let err = ''
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d))
  const exited = new Promise<number | string>((ok) =>
    child.on('exit', (code, signal) => {
      ok(code ?? signal ?? -1)
    }),
  )
  let buffered = ''
  const port = await new Promise<number>((ok, fail) => {
    const timer = setTimeout(() => {
      // Not left running: nobody holds it to stop it later.
      child.kill('SIGKILL')
      fail(new Error(`server did not start in ${timeoutMs} ms: ${err}`))
    }, timeoutMs)
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      buffered += d
      const parts = buffered.split('\n')
      buffered = parts.pop() ?? ''
      for (const line of parts) {
        lines.push(line)
        const m = /otpauth listening on .*:(\d+)"/.exec(line)
        if (m?.[1] !== undefined) {
          clearTimeout(timer)
          ok(Number(m[1]))
        }
      }
    })
    void exited.then((code) => {
      clearTimeout(timer)
      fail(new Error(`server exited (${String(code)}) before listening: ${err}`))
    })
  })
  return { child, port, address: `127.0.0.1:${port}`, lines, stderr: () => err, exited }
}

/** runToExit runs the built main.js expecting it to stop on its own; returns code and stderr. */
export async function runToExit(
  main: string,
  env: Record<string, string>,
  timeoutMs = 15_000,
): Promise<{ code: number | string; stderr: string; stdout: string }> {
  const child = spawn(process.execPath, [main], {
    env: { PATH: process.env['PATH'] ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stderr = ''
  let stdout = ''
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
  const code = await new Promise<number | string>((ok) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('exit', (c, s) => {
      clearTimeout(timer)
      ok(c ?? s ?? -1)
    })
  })
  return { code, stderr, stdout }
}

/** median of a list of numbers. */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1
    ? (sorted[mid] ?? 0)
    : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2
}
