import { randomBytes, randomInt, randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { ServerCredentials, type Server } from '@grpc/grpc-js'
import type { HealthImplementation } from 'grpc-health-check'
import type { Logger } from 'pino'
import { AuthService } from './auth/auth-service.js'
import { TrustedProxies } from './auth/client-address.js'
import { ClientLockout } from './auth/client-lockout.js'
import { systemClock, type Clock } from './auth/clock.js'
import { CodeHasher } from './auth/one-time-code.js'
import { PasswordHasher } from './auth/password.js'
import { PhoneParser } from './auth/phone.js'
import { SendPacer } from './auth/send-pacer.js'
import { SendThrottle } from './auth/send-throttle.js'
import type { SmsSender } from './auth/sms-sender.js'
import type { Config } from './config.js'
import { loadRegistry } from './http/http-rules.js'
import { localTarget } from './http/local-target.js'
import { RestGateway } from './http/rest-gateway.js'
import { MeteredChallengeCache } from './metrics/metered-challenge-cache.js'
import { MeteredSmsSender } from './metrics/metered-sms-sender.js'
import { MetricsServer } from './metrics/metrics-server.js'
import { OtpAuthMetrics } from './metrics/otpauth-metrics.js'
import { GatewayPass } from './rpc/gateway-pass.js'
import { createHandlers } from './rpc/handlers.js'
import { createServer, SERVICE_NAME } from './rpc/server.js'
import { ConsoleSmsSender } from './sms/console-sms-sender.js'
import { WebhookSmsSender } from './sms/webhook-sms-sender.js'
import { openDatabase } from './store/database.js'
import { migrate } from './store/migrations.js'
import { countActiveLockouts } from './store/lockout-count.js'
import { GroupCommit } from './store/group-commit.js'
import { createSqliteAuthStore } from './store/sqlite-auth-store.js'

/** What tests may replace; production passes none of these. */
export interface AppOverrides {
  clock?: Clock
  sms?: SmsSender
  randomInt?: (max: number) => number
}

export interface App {
  /** The port actually bound (useful with port 0). */
  port: number
  server: Server
  health: HealthImplementation
  auth: AuthService
  /** Port of the REST front door, when OTPAUTH_HTTP_ADDRESS is set. */
  httpPort: number | undefined
  /** Port of the Prometheus endpoint, when OTPAUTH_METRICS_ADDRESS is set. */
  metricsPort: number | undefined
  /** stop drains in-flight calls (up to the grace period), then closes the database. */
  stop(): Promise<void>
}

/**
 * startApp builds the whole service from a Config (the one composition root main.ts and the tests
 * share), runs migrations and starts listening.
 */
export async function startApp(
  config: Readonly<Config>,
  log: Logger,
  overrides: AppOverrides = {},
): Promise<App> {
  const clock = overrides.clock ?? systemClock
  const database = openDatabase(config.databasePath, config.databaseSynchronous)
  try {
    await migrate(database.db)
  } catch (error) {
    await database.close()
    throw error
  }
  const commits = new GroupCommit(database.sqlite)
  const store = createSqliteAuthStore(database.sqlite, database.db, commits)

  // Always collected (a few counter increments per call); served only on OTPAUTH_METRICS_ADDRESS.
  const metrics = new OtpAuthMetrics({
    activeLockouts: () => countActiveLockouts(database.sqlite, clock.now()),
  })
  const sms = new MeteredSmsSender(overrides.sms ?? createSmsSender(config, log), metrics)
  const hasher = new PasswordHasher(config.argon2, config.hashConcurrency)
  await hasher.prepare()
  const auth = new AuthService({
    phones: new PhoneParser(config.defaultRegion, config.cacheMax),
    store,
    sms,
    clock,
    randomInt: overrides.randomInt ?? ((max) => randomInt(max)),
    randomBytes: (size) => randomBytes(size),
    newId: () => randomUUID(),
    hasher,
    challenges: new MeteredChallengeCache(metrics, {
      clock,
      // Codes live only in this process, so a key that dies with it loses nothing.
      hasher: new CodeHasher(config.codeHmacKey ?? randomBytes(32)),
      max: config.cacheMax,
      ttlMs: config.codeTtlSeconds * 1000,
      maxAttempts: config.codeMaxAttempts,
    }),
    throttle: new SendThrottle({
      clock,
      cooldownMs: config.resendCooldownSeconds * 1000,
      perNumberPerHour: config.sendsPerNumberPerHour,
      perClientPerHour: config.sendsPerClientPerHour,
      max: config.cacheMax,
    }),
    lockout: new ClientLockout(store, clock, {
      threshold: config.lockoutThreshold,
      durationMs: config.lockoutSeconds * 1000,
    }),
    pacer: new SendPacer((ms) => sleep(ms)),
    policy: {
      codeTtlMs: config.codeTtlSeconds * 1000,
      sessionTtlMs: config.sessionTtlSeconds * 1000,
      numberFailureLimit: config.numberFailureLimit,
    },
  })

  const gatewayPass = new GatewayPass()
  const { server, health } = createServer({
    handlers: createHandlers(auth),
    log,
    trustedProxies: new TrustedProxies(config.trustedProxies),
    maxMessageBytes: config.maxMessageBytes,
    connection: {
      idleMs: config.connectionIdleSeconds * 1000,
      maxAgeMs: config.connectionMaxAgeSeconds * 1000,
      graceMs: config.shutdownGraceSeconds * 1000,
    },
    gatewayPass,
    observer: metrics,
    settled: () => commits.settled(),
  })
  let port: number
  try {
    port = await new Promise<number>((resolve, reject) => {
      server.bindAsync(config.address, ServerCredentials.createInsecure(), (error, bound) => {
        if (error) reject(new Error(`cannot listen on ${config.address}: ${error.message}`))
        else resolve(bound)
      })
    })
  } catch (error) {
    server.forceShutdown()
    await database.close()
    throw error
  }

  let door: RestGateway | undefined
  let httpPort: number | undefined
  let metricsServer: MetricsServer | undefined
  let metricsPort: number | undefined
  try {
    if (config.httpAddress !== undefined) {
      door = new RestGateway({
        target: localTarget(config.address, port),
        registry: loadRegistry(),
        services: [SERVICE_NAME],
        trustedProxies: new TrustedProxies(config.trustedProxies),
        pass: gatewayPass,
        maxBodyBytes: config.httpMaxBodyBytes,
        timeoutMs: 10_000,
        log,
      })
      httpPort = await door.listen(config.httpAddress)
    }
    if (config.metricsAddress !== undefined) {
      metricsServer = new MetricsServer(metrics.registry)
      metricsPort = await metricsServer.listen(config.metricsAddress)
    }
  } catch (error) {
    door?.close()
    await metricsServer?.close()
    server.forceShutdown()
    await database.close()
    throw new Error(`cannot start the REST door or metrics endpoint: ${(error as Error).message}`)
  }

  const prune = (): void => {
    try {
      store.pruneExpired(clock.now(), {
        clientFailuresMs: config.lockoutSeconds * 1000,
        numberFailuresMs: config.numberFailureRetentionSeconds * 1000,
        pendingMs: config.pendingRetentionSeconds * 1000,
      })
    } catch (error) {
      log.error({ err: error }, 'pruning expired rows failed')
    }
  }
  const pruneTimer = setInterval(prune, config.pruneIntervalSeconds * 1000).unref()

  let stopping: Promise<void> | undefined
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      health.setStatus('', 'NOT_SERVING')
      health.setStatus(SERVICE_NAME, 'NOT_SERVING')
      clearInterval(pruneTimer)
      // REST first stops taking requests; those in flight are gRPC calls the drain below waits for.
      const doorStopped = door?.stopAccepting()
      await new Promise<void>((resolve) => {
        // tryShutdown has no timeout of its own and can hang on a stuck client (grpc-node #1458).
        const force = setTimeout(() => {
          log.warn('grace period over: cancelling calls still in flight')
          server.forceShutdown()
          resolve()
        }, config.shutdownGraceSeconds * 1000)
        server.tryShutdown(() => {
          clearTimeout(force)
          resolve()
        })
      })
      door?.close()
      await doorStopped
      await metricsServer?.close()
      commits.commit()
      await database.close()
    })())

  return { port, server, health, auth, httpPort, metricsPort, stop }
}

function createSmsSender(config: Readonly<Config>, log: Logger): SmsSender {
  switch (config.sms.kind) {
    case 'console':
      return new ConsoleSmsSender(log)
    case 'webhook':
      return new WebhookSmsSender({ url: config.sms.url, timeoutMs: config.sms.timeoutMs })
  }
}
