import { hash, verify } from '@node-rs/argon2'
import { invalidField } from './auth-error.js'

export const PASSWORD_MIN_LENGTH = 8
export const PASSWORD_MAX_LENGTH = 128

/** Argon2Params are argon2id costs; OWASP's floor is 19 MiB, 2 passes, 1 lane. */
export interface Argon2Params {
  memoryKib: number
  timeCost: number
  parallelism: number
}

/**
 * parseNewPassword checks a password being set: 8–128 characters after Unicode NFKC normalisation
 * (NIST 800-63B: length, not composition rules). Throws INVALID_PASSWORD.
 */
export function parseNewPassword(raw: string, field = 'password'): string {
  const password = normalise(raw)
  const length = Array.from(password).length
  if (length < PASSWORD_MIN_LENGTH || length > PASSWORD_MAX_LENGTH) {
    throw invalidField(
      'INVALID_PASSWORD',
      field,
      `${field} must be ${PASSWORD_MIN_LENGTH} to ${PASSWORD_MAX_LENGTH} characters`,
    )
  }
  return password
}

/** parseLoginPassword checks a password offered at login: non-empty and bounded. */
export function parseLoginPassword(raw: string): string {
  const password = normalise(raw)
  const length = Array.from(password).length
  if (length === 0 || length > PASSWORD_MAX_LENGTH) {
    throw invalidField(
      'INVALID_PASSWORD',
      'password',
      `password must be 1 to ${PASSWORD_MAX_LENGTH} characters`,
    )
  }
  return password
}

function normalise(raw: string): string {
  // Bound the input before normalising: NFKC can expand a string.
  return raw.length > PASSWORD_MAX_LENGTH * 4 ? raw : raw.normalize('NFKC')
}

/**
 * PasswordHasher hashes and verifies with argon2id on libuv's thread pool (never on the event loop).
 * A semaphore caps hashes in flight so a login flood queues here instead of occupying every pool
 * thread that fs and dns also need.
 */
export class PasswordHasher {
  readonly #params: Argon2Params
  readonly #maxConcurrent: number
  #running = 0
  readonly #waiting: (() => void)[] = []
  #dummyHash: string | undefined

  constructor(params: Argon2Params, maxConcurrent: number) {
    this.#params = params
    this.#maxConcurrent = maxConcurrent
  }

  async hash(password: string): Promise<string> {
    return this.#limited(() =>
      hash(password, {
        memoryCost: this.#params.memoryKib,
        timeCost: this.#params.timeCost,
        parallelism: this.#params.parallelism,
      }),
    )
  }

  /**
   * verify checks a password against a stored hash. With no stored hash (unknown number, or an
   * account without a password) it verifies against a dummy hash of the same cost and answers
   * false, so the time taken does not reveal which numbers exist.
   */
  async verify(storedHash: string | null, password: string): Promise<boolean> {
    const target = storedHash ?? (await this.#dummy())
    const ok = await this.#limited(async () => {
      try {
        return await verify(target, password)
      } catch {
        return false
      }
    })
    return storedHash !== null && ok
  }

  /** prepare computes the dummy hash up front, so the first unknown-number login is not slower. */
  async prepare(): Promise<void> {
    await this.#dummy()
  }

  async #dummy(): Promise<string> {
    // The salt is random, so a constant input still gives a hash no password is known to match.
    this.#dummyHash ??= await this.hash('otpauth dummy password')
    return this.#dummyHash
  }

  async #limited<T>(task: () => Promise<T>): Promise<T> {
    if (this.#running >= this.#maxConcurrent) {
      await new Promise<void>((resolve) => this.#waiting.push(resolve))
    } else {
      this.#running += 1
    }
    try {
      return await task()
    } finally {
      const next = this.#waiting.shift()
      if (next === undefined) this.#running -= 1
      else next()
    }
  }
}
