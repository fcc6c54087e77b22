import { describe, expect, it } from 'vitest'
import { clientKey, resolveClientAddress, TrustedProxies } from '../src/auth/client-address.js'

const LOOPBACK = new TrustedProxies(['127.0.0.1/32', '::1/128'])
const CHAIN = new TrustedProxies(['127.0.0.1/32', '10.0.0.0/8', 'fd00::/8'])
const NONE = new TrustedProxies([])

describe('TrustedProxies', () => {
  it('when CIDRs are given, then addresses inside them are trusted and others are not', () => {
    expect(CHAIN.has('10.255.0.1')).toBe(true)
    expect(CHAIN.has('11.0.0.1')).toBe(false)
    expect(CHAIN.has('fd12::1')).toBe(true)
    expect(CHAIN.has('fe80::1')).toBe(false)
    expect(CHAIN.has('not an address')).toBe(false)
    expect(NONE.has('127.0.0.1')).toBe(false)
    expect(new TrustedProxies(['192.0.2.7']).has('192.0.2.7')).toBe(true)
    expect(new TrustedProxies(['192.0.2.7']).has('192.0.2.8')).toBe(false)
  })

  it('when a CIDR is malformed, then construction throws naming it', () => {
    for (const bad of [
      '',
      'x',
      '10.0.0.0/',
      '10.0.0.0/33',
      '::/129',
      '10.0.0.0/8/8',
      '1.2.3.4/0x8',
    ]) {
      expect(() => new TrustedProxies([bad]), bad).toThrow(`"${bad}"`)
    }
  })
})

describe('resolveClientAddress', () => {
  it.each([
    [
      'an untrusted peer, x-forwarded-for is ignored',
      '203.0.113.5',
      ['1.2.3.4'],
      LOOPBACK,
      '203.0.113.5',
    ],
    ['no trusted proxies, x-forwarded-for is ignored', '127.0.0.1', ['1.2.3.4'], NONE, '127.0.0.1'],
    ['a trusted peer, the forwarded client is used', '127.0.0.1', ['1.2.3.4'], LOOPBACK, '1.2.3.4'],
    ['a trusted peer and no header, the peer is used', '127.0.0.1', [], LOOPBACK, '127.0.0.1'],
    [
      'a trusted peer and an empty header, the peer is used',
      '127.0.0.1',
      [''],
      LOOPBACK,
      '127.0.0.1',
    ],
    [
      'a chain, the right-most untrusted entry wins',
      '127.0.0.1',
      ['6.6.6.6, 1.2.3.4, 10.0.0.2'],
      CHAIN,
      '1.2.3.4',
    ],
    [
      'a chain without spaces, the same',
      '127.0.0.1',
      ['6.6.6.6,1.2.3.4,10.0.0.2'],
      CHAIN,
      '1.2.3.4',
    ],
    [
      'a chain split over headers, the later header is nearer',
      '127.0.0.1',
      ['6.6.6.6', '1.2.3.4'],
      LOOPBACK,
      '1.2.3.4',
    ],
    [
      'a chain of trusted proxies only, the farthest is used',
      '127.0.0.1',
      ['10.0.0.3, 10.0.0.2'],
      CHAIN,
      '10.0.0.3',
    ],
    [
      'garbage at the right, the last good hop (the proxy) is used',
      '127.0.0.1',
      ['1.2.3.4, unknown'],
      LOOPBACK,
      '127.0.0.1',
    ],
    [
      'garbage left of the client, it is never reached',
      '127.0.0.1',
      ['garbage, 1.2.3.4'],
      LOOPBACK,
      '1.2.3.4',
    ],
    [
      'garbage behind a trusted hop, that hop is used',
      '127.0.0.1',
      ['garbage, 10.0.0.9'],
      CHAIN,
      '10.0.0.9',
    ],
    [
      'an IPv4-mapped peer, it is trusted as IPv4',
      '::ffff:127.0.0.1',
      ['1.2.3.4'],
      LOOPBACK,
      '1.2.3.4',
    ],
    [
      'an IPv4-mapped untrusted peer, it is reported as IPv4',
      '::ffff:203.0.113.5',
      [],
      LOOPBACK,
      '203.0.113.5',
    ],
    [
      'an IPv4-mapped forwarded client, it is IPv4',
      '127.0.0.1',
      ['::FFFF:1.2.3.4'],
      LOOPBACK,
      '1.2.3.4',
    ],
    ['an IPv6 peer, it is lower-cased', '2001:DB8::1', [], LOOPBACK, '2001:db8::1'],
    [
      'a trusted IPv6 peer, the forwarded IPv6 client is used',
      '::1',
      ['2001:db8::7'],
      LOOPBACK,
      '2001:db8::7',
    ],
    [
      'a bracketed IPv6 client with a port, the address is used',
      '127.0.0.1',
      ['[2001:db8::7]:443'],
      LOOPBACK,
      '2001:db8::7',
    ],
    [
      'an IPv6 client with a zone id, the zone is dropped',
      '127.0.0.1',
      ['fe80::1%eth0'],
      LOOPBACK,
      'fe80::1',
    ],
    ['an IPv6 peer with a zone id, the zone is dropped', 'fe80::1%25eth0', [], LOOPBACK, 'fe80::1'],
    ['a unix socket peer, it is local', 'local', ['1.2.3.4'], LOOPBACK, 'local'],
  ] as const)('when %s', (_name, peer, forwarded, trusted, expected) => {
    expect(resolveClientAddress(peer, forwarded, trusted)).toBe(expected)
  })
})

describe('clientKey', () => {
  it('when the address is IPv4, then it is its own key', () => {
    expect(clientKey('192.0.2.1')).toBe('192.0.2.1')
    expect(clientKey('192.0.2.2')).not.toBe(clientKey('192.0.2.1'))
  })

  it('when IPv6 addresses share a /64, then they share a key, written in one canonical form', () => {
    const keys = [
      '2001:db8:aa:1::1',
      '2001:db8:aa:1:ffff:ffff:ffff:ffff',
      '2001:0db8:00aa:0001:0:0:0:5',
      '2001:db8:aa:1:1234:5678:9abc:def0',
      '2001:db8:aa:1::',
    ].map(clientKey)

    expect(new Set(keys).size).toBe(1)
    expect(keys[0]).toBe('2001:db8:aa:1::/64')
  })

  it('when IPv6 addresses are in different /64s, then their keys differ', () => {
    expect(clientKey('2001:db8:aa:1::1')).not.toBe(clientKey('2001:db8:aa:2::1'))
    expect(clientKey('2001:db8::1')).not.toBe(clientKey('2001:db9::1'))
    expect(clientKey('::1')).toBe('0:0:0:0::/64')
    expect(clientKey('::')).toBe('0:0:0:0::/64')
  })

  it('when an IPv6 address carries an IPv4 tail, then the tail is read as two hex groups', () => {
    expect(clientKey('64:ff9b::192.0.2.1')).toBe('64:ff9b:0:0::/64')
    expect(clientKey('2001:db8:1:2:3:4:192.0.2.1')).toBe('2001:db8:1:2::/64')
  })

  it('when the address is not an IP (a unix socket), then it is used as is', () => {
    expect(clientKey('local')).toBe('local')
  })

  it('when resolved and keyed, then IPv4-mapped and plain IPv4 are one client', () => {
    const mapped = clientKey(resolveClientAddress('::ffff:198.51.100.9', [], NONE))
    const plain = clientKey(resolveClientAddress('198.51.100.9', [], NONE))

    expect(mapped).toBe(plain)
  })
})

describe('client addresses written oddly by proxies', () => {
  const trusted = new TrustedProxies(['127.0.0.1/32'])

  it('when the right-most x-forwarded-for entry carries a port, then the port is dropped', () => {
    expect(resolveClientAddress('127.0.0.1', ['198.51.100.4:53211'], trusted)).toBe('198.51.100.4')
  })

  it('when an IPv4-mapped address is written in hex, then it is keyed as the IPv4 client', () => {
    expect(clientKey('::ffff:c000:201')).toBe('192.0.2.1')
    expect(clientKey('::ffff:c000:202')).toBe('192.0.2.2')
  })
})
