import { startApp } from './app.js'
import { ConfigError, loadConfig, type Config } from './config.js'
import { createLogger } from './log.js'
import { redactUrl } from './store/database-url.js'

async function main(): Promise<void> {
  let config: Readonly<Config>
  try {
    config = loadConfig(process.env)
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error
    process.stderr.write(`otpauth: ${error.message}\n`)
    process.exit(2)
  }
  const log = createLogger(config.logLevel)

  if (config.sms.kind === 'console') {
    log.warn(
      'OTPAUTH_SMS=console: one-time codes are written to this log instead of being sent. ' +
        'For development only; set OTPAUTH_SMS=twilio or webhook in production.',
    )
  }

  const app = await startApp(config, log)
  const host = config.address.slice(0, config.address.lastIndexOf(':'))
  log.info(
    {
      address: `${host}:${app.port}`,
      database:
        config.databaseUrl === undefined ? config.databasePath : redactUrl(config.databaseUrl),
      sms: config.sms.kind,
    },
    `otpauth listening on ${host}:${app.port}`,
  )
  if (config.httpAddress !== undefined) {
    log.info(
      { httpPort: app.httpPort },
      `REST front door on ${config.httpAddress} (port ${app.httpPort})`,
    )
  }
  if (config.metricsAddress !== undefined) {
    log.info(
      { metricsPort: app.metricsPort },
      `metrics on ${config.metricsAddress}/metrics (port ${app.metricsPort})`,
    )
  }

  const shutdown = (signal: string): void => {
    log.info({ signal }, 'shutting down: draining calls in flight')
    app.stop().then(
      () => {
        log.info('stopped')
        process.exit(0)
      },
      (error: unknown) => {
        log.error({ err: error }, 'shutdown failed')
        process.exit(1)
      },
    )
  }
  process.once('SIGTERM', () => {
    shutdown('SIGTERM')
  })
  process.once('SIGINT', () => {
    shutdown('SIGINT')
  })
}

main().catch((error: unknown) => {
  process.stderr.write(`otpauth: ${error instanceof Error ? error.message : String(error)}\n`)
  process.exit(1)
})
