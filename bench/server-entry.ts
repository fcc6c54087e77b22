import { writeFileSync } from 'node:fs'
import { Session } from 'node:inspector/promises'
import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { startApp } from '../src/app.js'
import { loadConfig } from '../src/config.js'
import { createLogger } from '../src/log.js'

// Bench-only entry: the production composition (loadConfig → startApp, logs to stdout at the
// configured level) plus an event-loop delay monitor, reported to the bench over the IPC channel.
// The monitor is a 1 ms timer: negligible next to thousands of calls per second.
const eventLoop = monitorEventLoopDelay({ resolution: 1 })
eventLoop.enable()

interface Command {
  type: 'reset' | 'stats'
  label?: string
}

const config = loadConfig(process.env)
const log = createLogger(config.logLevel)
const app = await startApp(config, log)
process.send?.({ type: 'ready', port: app.port, startupMs: performance.now() })

// With BENCH_CPU_PROFILE_DIR set, each measured window (reset → stats) is profiled on its own.
const profileDir = process.env['BENCH_CPU_PROFILE_DIR']
const profiler = profileDir === undefined ? undefined : new Session()
profiler?.connect()
let profiling = false
let label = 'window'

process.on('message', (command: Command) => {
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
  })
})
process.on('disconnect', () => {
  app.stop().then(
    () => process.exit(0),
    () => process.exit(1),
  )
})
