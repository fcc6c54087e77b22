import pino, { type DestinationStream, type Logger } from 'pino'
import type { Config } from './config.js'

// Keys that could carry a secret, wherever they appear in a log object.
const REDACT = [
  'password',
  'code',
  'session_token',
  'sessionToken',
  'token',
  '*.password',
  '*.code',
  '*.session_token',
  '*.sessionToken',
  '*.token',
]

/**
 * createLogger builds the one root logger: JSON lines on stdout, secrets redacted by key. Writes
 * are asynchronous: lines that arrive while a write is in flight go out together in the next one,
 * instead of one blocking write per RPC; pino flushes what is left when the process exits.
 */
export function createLogger(level: Config['logLevel'], destination?: DestinationStream): Logger {
  const options = { level, redact: { paths: REDACT, censor: '[REDACTED]' } }
  return pino(options, destination ?? pino.destination({ dest: 1, sync: false }))
}
