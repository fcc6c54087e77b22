import { createHash } from 'node:crypto'
import { invalidField } from './auth-error.js'

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
  return createHash('sha256').update(token).digest()
}

/** parseSessionToken checks the shape of a token. Throws INVALID_SESSION_TOKEN. */
export function parseSessionToken(raw: string): string {
  if (!TOKEN_PATTERN.test(raw)) {
    throw invalidField(
      'INVALID_SESSION_TOKEN',
      'session_token',
      'session_token must be the 43-character token returned by Login',
    )
  }
  return raw
}
