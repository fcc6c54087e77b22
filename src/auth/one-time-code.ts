import { createHmac, timingSafeEqual } from 'node:crypto'
import { invalidField } from './auth-error.js'

export const CODE_LENGTH = 6
const CODE_SPACE = 10 ** CODE_LENGTH
const CODE_PATTERN = /^[0-9]{6}$/

/** What a code is for; a code issued for one purpose never satisfies another. */
export type CodePurpose = 'register' | 'login'

/** RandomInt returns a uniform integer in [0, max) from a CSPRNG (crypto.randomInt in production). */
export type RandomInt = (max: number) => number

/** generateCode draws a 6-digit code, leading zeros included. */
export function generateCode(randomInt: RandomInt): string {
  return randomInt(CODE_SPACE).toString().padStart(CODE_LENGTH, '0')
}

/** parseCode checks the shape of a code a user typed. Throws INVALID_CODE_FORMAT. */
export function parseCode(raw: string): string {
  const code = raw.trim()
  if (!CODE_PATTERN.test(code)) {
    throw invalidField('INVALID_CODE_FORMAT', 'code', 'code must be exactly 6 digits')
  }
  return code
}

/**
 * CodeHasher keys codes with HMAC-SHA-256 so that a memory dump of the challenge cache does not
 * reveal codes: 10^6 candidates are trivial to try against a plain hash, not against a secret key.
 * Purpose and phone are part of the MAC input, binding each code to its request.
 */
export class CodeHasher {
  readonly #key: Buffer

  constructor(key: Buffer) {
    if (key.length < 32) throw new Error('code HMAC key must be at least 32 bytes')
    this.#key = Buffer.from(key)
  }

  hash(purpose: CodePurpose, phone: string, code: string): Buffer {
    return createHmac('sha256', this.#key).update(`${purpose}\0${phone}\0${code}`).digest()
  }

  /** matches compares in constant time. */
  matches(expected: Buffer, purpose: CodePurpose, phone: string, code: string): boolean {
    return timingSafeEqual(expected, this.hash(purpose, phone, code))
  }
}
