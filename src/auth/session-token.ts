import { hash } from 'node:crypto'
import { AuthError, invalidField } from './auth-error.js'

/** RandomBytes fills a buffer from a CSPRNG (crypto.randomBytes in production). */
export type RandomBytes = (size: number) => Buffer

const TOKEN_BYTES = 32
const TOKEN_PATTERN = /^[A-Za-z0-9_-]{43}$/

/** newSessionToken draws 256 random bits, written as 43 base64url characters. */
export function newSessionToken(randomBytes: RandomBytes): string {
  return randomBytes(TOKEN_BYTES).toString('base64url')
}

/**
 * hashSessionToken is what the database keeps. A plain SHA-256 suffices: with 256 bits of entropy
 * a token cannot be guessed from its hash, and a leaked table holds no usable tokens.
 */
export function hashSessionToken(token: string): Buffer {
  return hash('sha256', token, 'buffer')
}

/**
 * parseSessionToken checks the shape of a token. Throws INVALID_SESSION_TOKEN, which is
 * UNAUTHENTICATED like any other token that names no live session.
 */
export function parseSessionToken(raw: string): string {
  if (!TOKEN_PATTERN.test(raw)) throw new AuthError('INVALID_SESSION_TOKEN')
  return raw
}

/** isSessionToken tells whether a string has the shape of a token. */
export function isSessionToken(raw: string): boolean {
  return TOKEN_PATTERN.test(raw)
}

const SESSION_ID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/** parseSessionId checks a public session id (a UUID). Throws INVALID_SESSION_ID. */
export function parseSessionId(raw: string): string {
  const id = raw.trim().toLowerCase()
  if (!SESSION_ID_PATTERN.test(id)) {
    throw invalidField('INVALID_SESSION_ID', 'session_id', 'session_id must be a UUID')
  }
  return id
}
