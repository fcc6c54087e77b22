import { createHmac } from 'node:crypto'
import { invalidField } from './auth-error.js'

export const CODE_LENGTH = 6
const CODE_SPACE = 10 ** CODE_LENGTH
const CODE_PATTERN = /^[0-9]{6}$/

/** What a code is for; a code issued for one purpose never satisfies another. */
export type CodePurpose = 'register' | 'login' | 'phone_change' | 'email_verify'

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
 * CodeHasher keys codes with HMAC-SHA-256 so that a dump of the code store does not reveal codes:
 * 10^6 candidates are trivial to try against a plain hash, not against a secret key. Purpose and
 * phone are part of the MAC input, binding each code to its request. New codes are keyed with the
 * current key; a previous key (rotation) still verifies the codes issued under it.
 */
export class CodeHasher {
  readonly #keys: readonly Buffer[]

  constructor(key: Buffer, previousKey?: Buffer) {
    const keys = previousKey === undefined ? [key] : [key, previousKey]
    for (const k of keys) {
      if (k.length < 32) throw new Error('code HMAC key must be at least 32 bytes')
    }
    this.#keys = keys.map((k) => Buffer.from(k))
  }

  /**
   * hash is the MAC a new code is stored as (current key). `boundTo` is everything the code is
   * for: the phone number, or for a phone change the account and the new number.
   */
  hash(purpose: CodePurpose, boundTo: string, code: string): Buffer {
    return mac(this.#keys[0] as Buffer, purpose, boundTo, code)
  }

  /** candidates are the code's MACs under every accepted key, current first. */
  candidates(purpose: CodePurpose, boundTo: string, code: string): Buffer[] {
    return this.#keys.map((k) => mac(k, purpose, boundTo, code))
  }
}

/**
 * keyFingerprint identifies a key without revealing it (an HMAC of a fixed label), so replicas
 * can check through the database that they share one.
 */
export function keyFingerprint(key: Buffer): string {
  return createHmac('sha256', key)
    .update('otpauth code key fingerprint v1')
    .digest('hex')
    .slice(0, 32)
}

function mac(key: Buffer, purpose: CodePurpose, boundTo: string, code: string): Buffer {
  return createHmac('sha256', key).update(`${purpose}\0${boundTo}\0${code}`).digest()
}
