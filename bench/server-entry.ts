import { writeFileSync } from 'node:fs'
import { Session } from 'node:inspector/promises'
import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import pg from 'pg'
import { startApp } from '../src/app.js'
import { loadConfig } from '../src/config.js'
import { createLogger } from '../src/log.js'

// Bench-only entry: the production composition (loadConfig → startApp, logs to stdout at the
// configured level) plus an event-loop delay monitor, reported to the bench over the IPC channel.
// The monitor is a 1 ms timer: negligible next to thousands of calls per second.
const eventLoop = monitorEventLoopDelay({ resolution: 1 })
eventLoop.enable()

interface Command {
  type: 'reset' | 'stats' | 'sample'
  label?: string
}

const config = loadConfig(process.env)
const log = createLogger(config.logLevel)

// On PostgreSQL, every query the driver sends is one round trip (BEGIN and COMMIT too): count them
// all, on the Client class the pool makes its connections with (wrapped before startApp opens it).
// undefined on SQLite, whose statements are calls into the process, not round trips.
let dbQueries: number | undefined
if (config.databaseUrl !== undefined) {
  dbQueries = 0
  // eslint-disable-next-line @typescript-eslint/unbound-method -- called with its client as `this`
  const query = pg.Client.prototype.query as (...args: unknown[]) => unknown
  const counted = function (this: pg.Client, ...args: unknown[]): unknown {
    dbQueries = (dbQueries ?? 0) + 1
    return query.apply(this, args)
  }
  pg.Client.prototype.query = counted as typeof pg.Client.prototype.query
}
const app = await startApp(config, log)
process.send?.({ type: 'ready', port: app.port, startupMs: performance.now() })

// With BENCH_CPU_PROFILE_DIR set, each measured window (reset → stats) is profiled on its own.
const profileDir = process.env['BENCH_CPU_PROFILE_DIR']
const profiler = profileDir === undefined ? undefined : new Session()
profiler?.connect()
let profiling = false
let label = 'window'

process.on('message', (command: Command) => {
  if (command.type === 'sample') {
    // The count with the time it was read: the bench interpolates it to its window's edges.
    process.send?.({ type: 'sample', t: performance.timeOrigin + performance.now(), dbQueries })
    return
  }
  if (command.type === 'reset') {
    eventLoop.reset()
    if (profiler !== undefined && !profiling) {
      profiling = true
      label = command.label ?? 'window'
      void profiler.post('Profiler.enable').then(() => profiler.post('Profiler.start'))
    }
    return
  }
  if (profiler !== undefined && profiling && profileDir !== undefined) {
    profiling = false
    const name = `${label}-${process.pid}-${Date.now()}.cpuprofile`
    void profiler.post('Profiler.stop').then(({ profile }) => {
      writeFileSync(join(profileDir, name), JSON.stringify(profile))
    })
  }
  process.send?.({
    type: 'stats',
    rssBytes: process.memoryUsage.rss(),
    eventLoopP99Ms: eventLoop.percentile(99) / 1e6,
    eventLoopMaxMs: eventLoop.max / 1e6,
    dbQueries,
  })
})
process.on('disconnect', () => {
  app.stop().then(
    () => process.exit(0),
    () => process.exit(1),
  )
})
