import { AuthError } from '../auth/auth-error.js'

// SQLSTATE classes that mean "the database cannot serve now", not "this query is wrong":
// 08 connection, 53 insufficient resources, 57 operator intervention (shutdown, statement
// timeout), 58 system error, 40 transaction rollback (serialization, deadlock).
const UNAVAILABLE_CLASSES = new Set(['08', '40', '53', '57', '58'])
// lock_timeout: a row lock held too long elsewhere.
const LOCK_NOT_AVAILABLE = '55P03'

/**
 * isUnavailable tells a database outage (refused or dropped connection, timeout, server shutting
 * down) from a fault in the query itself, which stays INTERNAL.
 */
export function isUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false
  const code = (error as { code?: unknown }).code
  if (code === LOCK_NOT_AVAILABLE) return true
  if (typeof code === 'string') {
    if (/^[0-9A-Z]{5}$/.test(code)) return UNAVAILABLE_CLASSES.has(code.slice(0, 2))
    return true // node errors: ECONNREFUSED, ECONNRESET, ETIMEDOUT, ENOTFOUND …
  }
  // pg's own: "Connection terminated …", "timeout exceeded when trying to connect", "Query read timeout"
  return /connection|timeout|terminated|not queryable/i.test(error.message)
}

/**
 * guarded runs a store operation and turns an outage into AuthError STORE_UNAVAILABLE (the cause
 * kept for the log), after telling `onUnavailable` (health turns NOT_SERVING until it recovers).
 */
export function guarded(onUnavailable: (cause: unknown) => void) {
  return async <T>(operation: () => Promise<T>): Promise<T> => {
    try {
      return await operation()
    } catch (error) {
      if (error instanceof AuthError || !isUnavailable(error)) throw error
      onUnavailable(error)
      throw new AuthError('STORE_UNAVAILABLE', { cause: error })
    }
  }
}
