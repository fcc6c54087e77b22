import { BlockList, isIP } from 'node:net'
import { detachedAscii } from './detached.js'

/**
 * TrustedProxies is the set of networks whose x-forwarded-for we believe. Built from CIDRs such as
 * "10.0.0.0/8,fd00::/8". Throws on a malformed entry, naming it.
 */
export class TrustedProxies {
  readonly #list = new BlockList()
  readonly #empty: boolean
  // BlockList.check builds a SocketAddress per call (~2 µs, twice per call behind a proxy); the
  // answers for recent addresses are kept. Bounded: cleared when full.
  readonly #known = new Map<string, boolean>()

  constructor(cidrs: readonly string[]) {
    for (const cidr of cidrs) {
      const [address = '', prefixText, ...extra] = cidr.split('/')
      const family = isIP(address)
      const maxPrefix = family === 6 ? 128 : 32
      // Only plain decimal digits: Number('') is 0, and "10.0.0.0/" must not mean "trust everyone".
      const prefix =
        prefixText === undefined
          ? maxPrefix
          : /^\d{1,3}$/.test(prefixText)
            ? Number(prefixText)
            : NaN
      if (
        family === 0 ||
        extra.length > 0 ||
        !Number.isInteger(prefix) ||
        prefix < 0 ||
        prefix > maxPrefix
      ) {
        throw new Error(`"${cidr}" is not an IPv4 or IPv6 CIDR`)
      }
      this.#list.addSubnet(address, prefix, family === 6 ? 'ipv6' : 'ipv4')
    }
    this.#empty = cidrs.length === 0
  }

  has(address: string): boolean {
    if (this.#empty) return false
    const known = this.#known.get(address)
    if (known !== undefined) return known
    const family = isIP(address)
    const trusted = family !== 0 && this.#list.check(address, family === 6 ? 'ipv6' : 'ipv4')
    if (this.#known.size >= 10_000) this.#known.clear()
    this.#known.set(address, trusted)
    return trusted
  }
}

/**
 * resolveClientAddress picks the address the request came from: the socket peer, or, when the peer
 * is a trusted proxy, the right-most x-forwarded-for entry that is not itself a trusted proxy. The
 * left part of x-forwarded-for is whatever the client wrote, so it is never used.
 */
export function resolveClientAddress(
  peer: string,
  forwardedFor: readonly string[],
  trusted: TrustedProxies,
): string {
  let address = normaliseAddress(peer)
  if (!trusted.has(address)) return address
  const hops = forwardedFor
    .flatMap((header) => header.split(','))
    .map((hop) => normaliseAddress(hop.trim()))
  for (let i = hops.length - 1; i >= 0; i -= 1) {
    const hop = hops[i] ?? ''
    if (isIP(hop) === 0) break // garbage in the chain: stop at the last good hop
    address = hop
    if (!trusted.has(hop)) break
  }
  // A hop is a slice of the whole header, which every key made from it (a challenge's requester,
  // a send bucket) would keep alive: ~7 KB per kept key for a 7 KB header.
  return detachedAscii(address)
}

/**
 * clientKey is what limits and lockouts are keyed by: an IPv4 address, or the /64 network of an
 * IPv6 address, because one subscriber usually holds a whole /64.
 */
export function clientKey(address: string): string {
  if (isIP(address) !== 6) return address
  const groups = expandIpv6(address)
  // An IPv4-mapped address in hex form (::ffff:c000:201) is the IPv4 client, not a shared /64.
  if (groups.slice(0, 6).join(':') === '0:0:0:0:0:ffff') {
    const [high = 0, low = 0] = groups.slice(6).map((g) => Number.parseInt(g, 16))
    return [high >> 8, high & 0xff, low >> 8, low & 0xff].join('.')
  }
  return `${groups.slice(0, 4).join(':')}::/64`
}

function normaliseAddress(raw: string): string {
  let address = raw
  // Some proxies append "ip:port" or "[ipv6]:port"; the port is not part of the client.
  const withPort = /^(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}$/.exec(address)
  if (withPort?.[1] !== undefined) address = withPort[1]
  if (address.startsWith('[')) address = address.slice(1, address.indexOf(']'))
  const zone = address.indexOf('%')
  if (zone >= 0) address = address.slice(0, zone)
  if (address.toLowerCase().startsWith('::ffff:') && isIP(address.slice(7)) === 4) {
    address = address.slice(7)
  }
  return address.toLowerCase()
}

function expandIpv6(address: string): string[] {
  let text = address
  // An embedded IPv4 tail (::1.2.3.4) becomes two hex groups.
  const lastColon = text.lastIndexOf(':')
  const tail = text.slice(lastColon + 1)
  if (isIP(tail) === 4) {
    const [a = 0, b = 0, c = 0, d = 0] = tail.split('.').map(Number)
    text = `${text.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const [head = '', rest] = text.split('::')
  const left = head === '' ? [] : head.split(':')
  const right = rest === undefined || rest === '' ? [] : rest.split(':')
  const zeros = new Array<string>(8 - left.length - right.length).fill('0')
  return [...left, ...(rest === undefined ? [] : zeros), ...right].map((g) =>
    Number.parseInt(g, 16).toString(16),
  )
}
