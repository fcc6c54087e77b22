import { randomBytes, randomInt, randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { ServerCredentials, type Server } from '@grpc/grpc-js'
import type { HealthImplementation } from 'grpc-health-check'
import type { Logger } from 'pino'
import { AuthService } from './auth/auth-service.js'
import { TrustedProxies } from './auth/client-address.js'
import { ClientLockout } from './auth/client-lockout.js'
import { systemClock, type Clock } from './auth/clock.js'
import { ChallengeCache } from './auth/challenge-cache.js'
import type { AuthStore, CodeStore, SendLimiter } from './auth/auth-store.js'
import { CodeHasher, keyFingerprint } from './auth/one-time-code.js'
import { PasswordHasher } from './auth/password.js'
import { PhoneParser } from './auth/phone.js'
import type { EmailSender } from './auth/email-sender.js'
import { Messages } from './auth/messages.js'
import { MemorySmsBudget } from './auth/sms-budget.js'
import { withSmsBudget } from './auth/with-sms-budget.js'
import { MeteredEmailSender } from './metrics/metered-email-sender.js'
import { MeteredSendLimiter } from './metrics/metered-send-limiter.js'
import { ConsoleEmailSender } from './email/console-email-sender.js'
import { SendPacer } from './auth/send-pacer.js'
import { SendThrottle } from './auth/send-throttle.js'
import type { SmsSender } from './auth/sms-sender.js'
import type { Config } from './config.js'
import type { RestGateway } from './http/rest-gateway.js'
import { StoreHealth } from './health/store-health.js'
import { MeteredCodeStore } from './metrics/metered-code-store.js'
import { MeteredSmsSender } from './metrics/metered-sms-sender.js'
import type { MetricsServer } from './metrics/metrics-server.js'
import { OtpAuthMetrics } from './metrics/otpauth-metrics.js'
import { GatewayPass } from './rpc/gateway-pass.js'
import { createHandlers } from './rpc/handlers.js'
import { createServer, SERVICE_NAME } from './rpc/server.js'
import { ConsoleSmsSender } from './sms/console-sms-sender.js'
import { TwilioSmsSender } from './sms/twilio-sms-sender.js'
import { WebhookSmsSender } from './sms/webhook-sms-sender.js'
import { openDatabase } from './store/database.js'
import { redactUrl } from './store/database-url.js'
import type { OpenPostgres } from './store/postgres.js'
import { migrate } from './store/migrations.js'
import { countActiveLockouts } from './store/lockout-count.js'
import { GroupCommit } from './store/group-commit.js'
import { createSqliteAuthStore } from './store/sqlite-auth-store.js'
import { isUnavailable } from './store/store-errors.js'
import { sql } from 'kysely'

/** What tests may replace; production passes none of these. */
export interface AppOverrides {
  clock?: Clock
  sms?: SmsSender
  email?: EmailSender
  randomInt?: (max: number) => number
  /** Which recent send the no-send paths replay (tests make it deterministic). */
  random?: () => number
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
  // Reported to once the server (and its health service) exists; store calls start after that.
  const watch: { health: StoreHealth | undefined } = { health: undefined }
  const onUnavailable = (cause: unknown): void => {
    watch.health?.unavailable(cause)
  }
  const onSuspect = (): void => {
    watch.health?.suspect()
  }
  const stores =
    config.databaseUrl === undefined
      ? await openEmbeddedStores(config, clock)
      : await openSharedStores(config, config.databaseUrl, clock, log, onUnavailable, onSuspect)

  // Always collected (a few counter increments per call); served only on OTPAUTH_METRICS_ADDRESS.
  const metrics = new OtpAuthMetrics({ activeLockouts: () => stores.activeLockouts() })
  const phones = new PhoneParser(
    config.defaultRegion,
    config.cacheMax,
    config.smsBudgets.prefixDigits,
  )
  const regionOf = (phone: string): string => phones.region(phone)
  const sms = new MeteredSmsSender(overrides.sms ?? createSmsSender(config, log), metrics, regionOf)
  if (config.testNumbers.size > 0) {
    // The numbers, not their codes: a code in the log would be a credential in the log.
    log.warn(
      { testNumbers: [...config.testNumbers.keys()] },
      'OTPAUTH_TEST_NUMBERS: these numbers get fixed codes and skip the send limits and the SMS provider; keep the list short and its codes secret',
    )
  }
  const email = new MeteredEmailSender(
    overrides.email ?? (await createEmailSender(config, log)),
    metrics,
  )
  const hasher = new PasswordHasher(config.argon2, config.hashConcurrency)
  await hasher.prepare()
  const store = stores.store
  const auth = new AuthService({
    phones,
    store,
    sms,
    clock,
    randomInt: overrides.randomInt ?? ((max) => randomInt(max)),
    randomBytes: (size) => randomBytes(size),
    newId: () => randomUUID(),
    hasher,
    codes: new MeteredCodeStore(stores.codes, metrics, regionOf),
    codeHasher: stores.codeHasher,
    throttle: new MeteredSendLimiter(stores.throttle, metrics),
    lockout: new ClientLockout(store, clock, {
      threshold: config.lockoutThreshold,
      durationMs: config.lockoutSeconds * 1000,
    }),
    pacer: new SendPacer((ms) => sleep(ms), overrides.random),
    email,
    emailPacer: new SendPacer((ms) => sleep(ms), overrides.random),
    messages: new Messages(config.messages),
    policy: {
      codeTtlMs: config.codeTtlSeconds * 1000,
      codeMaxAttempts: config.codeMaxAttempts,
      sessionTtlMs: config.sessionTtlSeconds * 1000,
      numberFailureLimit: config.numberFailureLimit,
      privilegedSessionMs: config.privilegedSessionSeconds * 1000,
      allowedCountries: config.smsAllowedCountries,
      testNumbers: config.testNumbers,
    },
    log,
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
    settled: stores.settled,
  })
  const storeHealth = new StoreHealth({
    ping: stores.ping,
    // Readiness only ("otpauth.v1.OtpAuth"): the process itself is fine ("" stays SERVING), and
    // restarting it (what a failed liveness probe does) would not bring the database back.
    setServing: (serving) => {
      health.setStatus(SERVICE_NAME, serving ? 'SERVING' : 'NOT_SERVING')
    },
    log,
    probeMs: 1_000,
  })
  watch.health = storeHealth
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
    await stores.close()
    throw error
  }

  let door: RestGateway | undefined
  let httpPort: number | undefined
  let metricsServer: MetricsServer | undefined
  let metricsPort: number | undefined
  try {
    if (config.httpAddress !== undefined) {
      // Loaded only when configured: the door's descriptor registry costs about 50 ms of start-up.
      const [{ RestGateway }, { loadRegistry }, { localTarget }] = await Promise.all([
        import('./http/rest-gateway.js'),
        import('./http/http-rules.js'),
        import('./http/local-target.js'),
      ])
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
      const { MetricsServer } = await import('./metrics/metrics-server.js')
      metricsServer = new MetricsServer(metrics.registry)
      metricsPort = await metricsServer.listen(config.metricsAddress)
    }
  } catch (error) {
    door?.close()
    await metricsServer?.close()
    server.forceShutdown()
    await stores.close()
    throw new Error(`cannot start the REST door or metrics endpoint: ${(error as Error).message}`)
  }

  const prune = (): void => {
    stores.heartbeat().catch((error: unknown) => {
      log.warn({ err: error }, "renewing this replica's key record failed")
    })
    store
      .pruneExpired(clock.now(), {
        clientFailuresMs: config.lockoutSeconds * 1000,
        numberFailuresMs: config.numberFailureRetentionSeconds * 1000,
        pendingMs: config.pendingRetentionSeconds * 1000,
      })
      .catch((error: unknown) => {
        log.error({ err: error }, 'pruning expired rows failed')
      })
  }
  const pruneTimer = setInterval(prune, config.pruneIntervalSeconds * 1000).unref()

  let stopping: Promise<void> | undefined
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      storeHealth.stop()
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
      await email.close()
      await stores.close()
    })())

  return { port, server, health, auth, httpPort, metricsPort, stop }
}

/** Stores are where the rules keep their state: one process (SQLite) or many (PostgreSQL). */
interface Stores {
  store: AuthStore
  codes: CodeStore
  codeHasher: CodeHasher
  /** Send limits and SMS budgets, charged together. */
  throttle: SendLimiter
  /** Resolves once the writes made so far are durable (SQLite's group commit). */
  settled: (() => Promise<void>) | undefined
  activeLockouts: () => Promise<number>
  /**
   * Called every prune round: PostgreSQL tells the other replicas it still holds its keys and
   * drops budget windows that have ended.
   */
  heartbeat: () => Promise<void>
  ping: () => Promise<void>
  close: () => Promise<void>
}

/** The embedded default: a SQLite file, codes and send limits in this process's memory. */
async function openEmbeddedStores(config: Readonly<Config>, clock: Clock): Promise<Stores> {
  const database = openDatabase(config.databasePath, config.databaseSynchronous)
  try {
    await migrate(database.db)
  } catch (error) {
    await database.close()
    throw error
  }
  const commits = new GroupCommit(database.sqlite)
  return {
    store: createSqliteAuthStore(database.sqlite, database.db, commits),
    codes: new ChallengeCache({ max: config.cacheMax }),
    // Codes live only in this process, so a key that dies with it loses nothing.
    codeHasher: new CodeHasher(config.codeHmacKey ?? randomBytes(32), config.codeHmacPreviousKey),
    throttle: withSmsBudget(
      new SendThrottle({
        cooldownMs: config.resendCooldownSeconds * 1000,
        perNumberPerHour: config.sendsPerNumberPerHour,
        perClientPerHour: config.sendsPerClientPerHour,
        max: config.cacheMax,
      }),
      new MemorySmsBudget({ ...config.smsBudgets, max: config.cacheMax }),
    ),
    settled: () => commits.settled(),
    activeLockouts: () => Promise.resolve(countActiveLockouts(database.sqlite, clock.now())),
    heartbeat: () => Promise.resolve(),
    ping: () => Promise.resolve(),
    close: async () => {
      commits.commit()
      await database.close()
    },
  }
}

/**
 * Many replicas: every piece of state that limits or proves anything in PostgreSQL. Start-up
 * waits for the database (retrying with backoff up to OTPAUTH_DATABASE_STARTUP_TIMEOUT_SECONDS),
 * migrates under an advisory lock and checks this replica's key and clock against the others.
 */
async function openSharedStores(
  config: Readonly<Config>,
  url: string,
  clock: Clock,
  log: Logger,
  onUnavailable: (cause: unknown) => void,
  onSuspect: () => void,
): Promise<Stores> {
  const key = config.codeHmacKey
  if (key === undefined) throw new Error('OTPAUTH_CODE_HMAC_KEY is required with PostgreSQL')
  // Loaded only here: the embedded default starts without the driver (about 40 ms of start-up).
  const [
    { openPostgres },
    { createPostgresAuthStore },
    { createPostgresCodeStore },
    { createPostgresSendLimiter },
    { createPostgresSmsBudget },
    { checkReplica, renewKeys },
  ] = await Promise.all([
    import('./store/postgres.js'),
    import('./store/postgres-auth-store.js'),
    import('./store/postgres-code-store.js'),
    import('./store/postgres-send-limiter.js'),
    import('./store/postgres-sms-budget.js'),
    import('./store/replica-checks.js'),
  ])
  const where = redactUrl(url)
  const identity = {
    keyFingerprint: keyFingerprint(key),
    previousKeyFingerprint:
      config.codeHmacPreviousKey === undefined
        ? undefined
        : keyFingerprint(config.codeHmacPreviousKey),
    now: () => clock.now(),
    maxClockSkewMs: config.maxClockSkewMs,
  }
  const deadline = performance.now() + config.databaseStartupTimeoutSeconds * 1000
  let delayMs = 250
  let pg: OpenPostgres
  for (;;) {
    pg = openPostgres({
      url,
      poolMax: config.databasePool.max,
      connectTimeoutMs: config.databasePool.connectTimeoutMs,
      statementTimeoutMs: config.databasePool.statementTimeoutMs,
      applicationName: 'otpauth',
      onIdleError: (error) => {
        log.warn({ reason: scrub(error.message, url) }, 'idle PostgreSQL connection lost')
        onSuspect()
      },
    })
    try {
      await migrate(pg.db)
      await checkReplica(pg.db, identity)
      break
    } catch (error) {
      await pg.close()
      const cause = error instanceof Error && error.cause instanceof Error ? error.cause : error
      const reason = scrub(cause instanceof Error ? cause.message : String(cause), url)
      if (!isUnavailable(cause) || performance.now() + delayMs > deadline) {
        throw new Error(
          `cannot use the PostgreSQL database in OTPAUTH_DATABASE (${where}): ${reason}`,
        )
      }
      log.warn({ database: where, reason, retryInMs: delayMs }, 'PostgreSQL unreachable; retrying')
      await sleep(delayMs)
      delayMs = Math.min(delayMs * 2, 5_000)
    }
  }
  const db = pg.db
  const store = createPostgresAuthStore(db, onUnavailable)
  const limits = {
    cooldownMs: config.resendCooldownSeconds * 1000,
    perNumberPerHour: config.sendsPerNumberPerHour,
    perClientPerHour: config.sendsPerClientPerHour,
  }
  const budget = createPostgresSmsBudget(db, config.smsBudgets, onUnavailable)
  return {
    store,
    codes: createPostgresCodeStore(db, onUnavailable),
    codeHasher: new CodeHasher(key, config.codeHmacPreviousKey),
    throttle: createPostgresSendLimiter(db, limits, config.smsBudgets, onUnavailable),
    settled: undefined,
    activeLockouts: async () => {
      const row = await db
        .selectFrom('lockouts')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('locked_until', '>', clock.now())
        .executeTakeFirstOrThrow()
      return row.n
    },
    heartbeat: async () => {
      await renewKeys(db, identity)
      await budget.prune(clock.now())
    },
    ping: async () => {
      await sql`select 1`.execute(db)
    },
    close: () => pg.close(),
  }
}

/** scrub keeps the database password out of a message that may reach a log. */
function scrub(message: string, url: string): string {
  let password = ''
  try {
    password = decodeURIComponent(new URL(url).password)
  } catch {
    // not a URL: nothing to scrub
  }
  return password === '' ? message : message.split(password).join('***')
}

async function createEmailSender(config: Readonly<Config>, log: Logger): Promise<EmailSender> {
  switch (config.email.kind) {
    case 'console':
      return new ConsoleEmailSender(log)
    case 'smtp': {
      // Loaded only when configured: nodemailer costs about 45 ms of start-up.
      const { SmtpEmailSender } = await import('./email/smtp-email-sender.js')
      return new SmtpEmailSender({
        url: config.email.url,
        from: config.email.from,
        timeoutMs: config.email.timeoutMs,
      })
    }
  }
}

function createSmsSender(config: Readonly<Config>, log: Logger): SmsSender {
  switch (config.sms.kind) {
    case 'console':
      return new ConsoleSmsSender(log)
    case 'webhook':
      // The system clock, not an injected one: receivers check webhook-timestamp against theirs.
      return new WebhookSmsSender({
        url: config.sms.url,
        timeoutMs: config.sms.timeoutMs,
        secret: config.sms.secret,
        clock: systemClock,
        newMessageId: () => `msg_${randomUUID().replaceAll('-', '')}`,
      })
    case 'twilio':
      return new TwilioSmsSender({
        apiUrl: config.sms.apiUrl,
        accountSid: config.sms.accountSid,
        username: config.sms.username,
        password: config.sms.password,
        sender: config.sms.sender,
        timeoutMs: config.sms.timeoutMs,
        clock: systemClock,
        log,
      })
  }
}
