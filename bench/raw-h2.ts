import net from 'node:net'
import type { CallResult } from './grpc-call.js'

// A minimal HTTP/2 client for unary gRPC over plaintext (h2c with prior knowledge), written for
// one purpose: to cost the load generator far less CPU per call than the server it measures.
// node:http2 builds a Duplex stream per call and costs about as much CPU as a grpc-js server
// answering it; with both sides equal, a closed loop settles into ping-pong and neither side
// saturates its core. Here a call is a few Buffer writes and a frame scan.
//
// It announces SETTINGS_HEADER_TABLE_SIZE = 0, so the server's HPACK encoder never uses its
// dynamic table and every header block can be read without state. grpc-status is the one trailer
// field with a literal name and a short all-digit value; nghttp2 only Huffman-codes a string when
// that makes it shorter, which is never the case for one or two digits (RFC 7541 Appendix B
// codes digits in 5–6 bits).

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')
const DATA = 0x0
const HEADERS = 0x1
const RST_STREAM = 0x3
const SETTINGS = 0x4
const PING = 0x6
const GOAWAY = 0x7
const CONTINUATION = 0x9
const END_STREAM = 0x1
const ACK = 0x1
const END_HEADERS = 0x4
const PADDED = 0x8
const PRIORITY = 0x20
const WINDOW = 0x7fff_ffff - 65_535

interface Pending {
  resolve: (result: CallResult) => void
  wantMessage: boolean
  chunks: Buffer[] | undefined
}

function frameHeader(length: number, type: number, flags: number, stream: number): Buffer {
  const h = Buffer.allocUnsafe(9)
  h.writeUIntBE(length, 0, 3)
  h[3] = type
  h[4] = flags
  h.writeUInt32BE(stream, 5)
  return h
}

/** HPACK integer with an n-bit prefix (RFC 7541 §5.1), first byte or-ed with `mask`. */
function hpackInt(value: number, prefixBits: number, mask: number): number[] {
  const max = (1 << prefixBits) - 1
  if (value < max) return [mask | value]
  const out = [mask | max]
  let rest = value - max
  while (rest >= 128) {
    out.push((rest & 127) | 128)
    rest >>= 7
  }
  out.push(rest)
  return out
}

function hpackString(text: string): Buffer {
  const bytes = Buffer.from(text, 'latin1')
  return Buffer.concat([Buffer.from(hpackInt(bytes.length, 7, 0)), bytes])
}

/** A header field as a literal without indexing, name from the static table (index) or literal. */
function literal(name: number | string, value: string): Buffer {
  if (typeof name === 'number') {
    return Buffer.concat([Buffer.from(hpackInt(name, 4, 0)), hpackString(value)])
  }
  return Buffer.concat([Buffer.from([0]), hpackString(name), hpackString(value)])
}

export class RawH2Connection {
  readonly #socket: net.Socket
  readonly #authority: string
  readonly #pending = new Map<number, Pending>()
  readonly #blocks = new Map<string, Buffer>()
  readonly #forwarded = new Map<string, Buffer>()
  #nextStream = 1
  #buffer: Buffer = Buffer.alloc(0)
  #received = 0
  #closed = false
  // A header block split over CONTINUATION frames: its stream, end-of-stream flag and parts.
  #continued: { stream: number; endStream: boolean; parts: Buffer[] } | undefined

  constructor(authority: string) {
    const url = new URL(authority)
    this.#authority = url.host
    this.#socket = net.connect({ host: url.hostname, port: Number(url.port), noDelay: true })
    const settings = Buffer.alloc(18)
    settings.writeUInt16BE(0x1, 0) // HEADER_TABLE_SIZE
    settings.writeUInt32BE(0, 2)
    settings.writeUInt16BE(0x2, 6) // ENABLE_PUSH
    settings.writeUInt32BE(0, 8)
    settings.writeUInt16BE(0x4, 12) // INITIAL_WINDOW_SIZE
    settings.writeUInt32BE(0x7fff_ffff, 14)
    const increment = Buffer.allocUnsafe(4)
    increment.writeUInt32BE(WINDOW, 0)
    this.#socket.write(
      Buffer.concat([
        PREFACE,
        frameHeader(settings.length, SETTINGS, 0, 0),
        settings,
        frameHeader(4, 0x8, 0, 0),
        increment,
      ]),
    )
    this.#socket.on('data', (chunk: Buffer) => {
      this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk])
      this.#readFrames()
    })
    this.#socket.on('error', () => {
      this.#fail()
    })
    this.#socket.on('close', () => {
      this.#fail()
    })
  }

  call(
    path: string,
    message: Uint8Array,
    forwardedFor: string | undefined,
    wantMessage: boolean,
  ): Promise<CallResult> {
    if (this.#closed) return Promise.resolve({ status: -1, message: undefined })
    const stream = this.#nextStream
    this.#nextStream += 2
    let block = this.#blocks.get(path)
    if (block === undefined) {
      block = Buffer.concat([
        Buffer.from([0x83, 0x86]), // :method POST, :scheme http (static table 3 and 6)
        literal(4, path),
        literal(1, this.#authority),
        literal(31, 'application/grpc'),
        literal('te', 'trailers'),
      ])
      this.#blocks.set(path, block)
    }
    if (forwardedFor !== undefined) {
      let field = this.#forwarded.get(forwardedFor)
      if (field === undefined) {
        field = literal('x-forwarded-for', forwardedFor)
        if (this.#forwarded.size < 65_536) this.#forwarded.set(forwardedFor, field)
      }
      block = Buffer.concat([block, field])
    }
    const out = Buffer.allocUnsafe(9 + block.length + 9 + 5 + message.length)
    out.writeUIntBE(block.length, 0, 3)
    out[3] = HEADERS
    out[4] = END_HEADERS
    out.writeUInt32BE(stream, 5)
    block.copy(out, 9)
    let at = 9 + block.length
    out.writeUIntBE(5 + message.length, at, 3)
    out[at + 3] = DATA
    out[at + 4] = END_STREAM
    out.writeUInt32BE(stream, at + 5)
    at += 9
    out[at] = 0
    out.writeUInt32BE(message.length, at + 1)
    out.set(message, at + 5)
    return new Promise((resolve) => {
      this.#pending.set(stream, { resolve, wantMessage, chunks: undefined })
      this.#socket.write(out)
    })
  }

  close(): void {
    this.#closed = true
    this.#socket.end()
  }

  #fail(): void {
    this.#closed = true
    for (const pending of this.#pending.values())
      pending.resolve({ status: -1, message: undefined })
    this.#pending.clear()
  }

  #readFrames(): void {
    const buffer = this.#buffer
    let at = 0
    let replies: Buffer[] | undefined
    while (buffer.length - at >= 9) {
      const length = buffer.readUIntBE(at, 3)
      if (buffer.length - at < 9 + length) break
      const type = buffer[at + 3] ?? 0
      const flags = buffer[at + 4] ?? 0
      const stream = buffer.readUInt32BE(at + 5) & 0x7fff_ffff
      const payload = buffer.subarray(at + 9, at + 9 + length)
      at += 9 + length
      switch (type) {
        case DATA: {
          this.#received += length
          const pending = this.#pending.get(stream)
          if (pending?.wantMessage === true) {
            const start = (flags & PADDED) !== 0 ? 1 : 0
            const end = payload.length - ((flags & PADDED) !== 0 ? (payload[0] ?? 0) : 0)
            ;(pending.chunks ??= []).push(Buffer.from(payload.subarray(start, end)))
          }
          if ((flags & END_STREAM) !== 0) this.#finish(stream, -1)
          break
        }
        case HEADERS: {
          let start = 0
          let end = payload.length
          if ((flags & PADDED) !== 0) {
            start = 1
            end -= payload[0] ?? 0
          }
          if ((flags & PRIORITY) !== 0) start += 5
          const part = payload.subarray(start, end)
          const endStream = (flags & END_STREAM) !== 0
          if ((flags & END_HEADERS) === 0) {
            this.#continued = { stream, endStream, parts: [Buffer.from(part)] }
          } else if (endStream) {
            this.#finish(stream, grpcStatus(part))
          }
          break
        }
        case CONTINUATION: {
          const c = this.#continued
          if (c === undefined) break
          c.parts.push(Buffer.from(payload))
          if ((flags & END_HEADERS) !== 0) {
            this.#continued = undefined
            if (c.endStream) this.#finish(c.stream, grpcStatus(Buffer.concat(c.parts)))
          }
          break
        }
        case RST_STREAM:
          this.#finish(stream, -1)
          break
        case SETTINGS:
          if ((flags & ACK) === 0) (replies ??= []).push(frameHeader(0, SETTINGS, ACK, 0))
          break
        case PING:
          if ((flags & ACK) === 0) {
            ;(replies ??= []).push(frameHeader(8, PING, ACK, 0), Buffer.from(payload))
          }
          break
        case GOAWAY:
          this.#closed = true
          break
        default:
          break // WINDOW_UPDATE, PRIORITY, unknown: nothing to do for a unary client
      }
    }
    this.#buffer = at === buffer.length ? Buffer.alloc(0) : buffer.subarray(at)
    if (this.#received > WINDOW / 2) {
      const increment = Buffer.allocUnsafe(4)
      increment.writeUInt32BE(this.#received, 0)
      ;(replies ??= []).push(frameHeader(4, 0x8, 0, 0), increment)
      this.#received = 0
    }
    if (replies !== undefined) this.#socket.write(Buffer.concat(replies))
  }

  #finish(stream: number, status: number): void {
    const pending = this.#pending.get(stream)
    if (pending === undefined) return
    this.#pending.delete(stream)
    let message: Buffer | undefined
    if (pending.chunks !== undefined) {
      const all = pending.chunks.length === 1 ? pending.chunks[0] : Buffer.concat(pending.chunks)
      if (all !== undefined && all.length >= 5) message = all.subarray(5, 5 + all.readUInt32BE(1))
    }
    pending.resolve({ status, message })
  }
}

/** readInt reads an HPACK integer with an n-bit prefix at `at`; returns [value, next offset]. */
function readInt(block: Buffer, at: number, prefixBits: number): [number, number] {
  const max = (1 << prefixBits) - 1
  let value = (block[at] ?? 0) & max
  let i = at + 1
  if (value < max) return [value, i]
  let shift = 0
  for (;;) {
    const b = block[i++] ?? 0
    value += (b & 127) * 2 ** shift
    shift += 7
    if ((b & 128) === 0 || i > block.length) return [value, i]
  }
}

/** grpcStatus finds grpc-status in a stateless (no dynamic table) header block; -1 if absent. */
function grpcStatus(block: Buffer): number {
  let at = 0
  while (at < block.length) {
    const b = block[at] ?? 0
    if ((b & 0x80) !== 0) {
      at = readInt(block, at, 7)[1] // indexed field: a static-table entry, never grpc-status
      continue
    }
    if ((b & 0xe0) === 0x20) {
      at = readInt(block, at, 5)[1] // dynamic table size update
      continue
    }
    const [index, afterIndex] = readInt(block, at, (b & 0xc0) === 0x40 ? 6 : 4)
    at = afterIndex
    let newName = false
    if (index === 0) {
      const [nameLength, afterName] = readInt(block, at, 7)
      at = afterName + nameLength
      newName = true
    }
    const huffman = ((block[at] ?? 0) & 0x80) !== 0
    const [valueLength, afterValue] = readInt(block, at, 7)
    const value = block.subarray(afterValue, afterValue + valueLength)
    at = afterValue + valueLength
    if (newName && !huffman && valueLength >= 1 && valueLength <= 2 && isDigits(value)) {
      return Number(value.toString('latin1'))
    }
  }
  return -1
}

function isDigits(bytes: Buffer): boolean {
  for (const b of bytes) if (b < 0x30 || b > 0x39) return false
  return true
}
