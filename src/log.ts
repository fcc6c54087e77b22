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

/** createLogger builds the one root logger: JSON lines, secrets redacted by key. */
export function createLogger(level: Config['logLevel'], destination?: DestinationStream): Logger {
  const options = { level, redact: { paths: REDACT, censor: '[REDACTED]' } }
  return destination === undefined ? pino(options) : pino(options, destination)
}
