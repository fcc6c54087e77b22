import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import {
  closeSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs'
import { connect as connectTcp, createServer as createNetServer, type AddressInfo } from 'node:net'
import { availableParallelism, cpus, loadavg, setPriority, tmpdir, totalmem } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import { encodeHealthCheck, GrpcConnection, isServing, STATUS_NAMES } from './grpc-call.js'
import { RPCS, type Scenario, type WorkerResult, type WorkerSpec } from './load-worker.js'
import { CODE_SLOTS } from './phones.js'
import { CLUSTER_SETTINGS, findBinDir, startCluster, type BenchCluster } from './postgres.js'
import { startSmsSink, type SmsSink } from './sms-sink.js'
import { median, round, summarise, type Latency } from './stats.js'
import { lineChart } from './svg.js'
import {
  h2loadMarkdown,
  h2loadSection,
  h2loadTargets,
  h2loadVersion,
  type H2loadDeps,
  type H2loadResult,
} from './h2load.js'
import {
  instructionsMarkdown,
  instructionsSection,
  type InstructionsDeps,
  type InstructionsResult,
} from './instructions.js'

// ---------------------------------------------------------------------------------------------
// Options

interface Options {
  quick: boolean
  durationMs: number
  warmupMs: number
  concurrency: number
  workers: number
  connections: number
  floodMs: number
  curve: number[]
  curveMs: number
  curveWarmupMs: number
  hashLevels: number[]
  hashMs: number
  hashWarmupMs: number
  coldStarts: number
  argonLevels: number[]
  argonSeconds: number
  only: Set<string> | undefined
  scenarios: Set<string> | undefined
  cpuProf: boolean
  niceHashThreads: boolean
  client: 'raw' | 'node-http2'
  stores: Store[]
  outDir: string
  h2loadMs: number
  h2loadRounds: number
  instrCalls: number
  instrWarmup: number
  instrRounds: number
}

type Store = 'sqlite' | 'postgres'

const HELP = `npm run bench -- [options]
  --quick               about a minute: short runs, few points (a smoke run)
  --duration <s>        measured seconds per scenario (default 8; quick 0.6)
  --warmup <s>          warm-up seconds, not measured (default 2; quick 0.25)
  --concurrency <n>     calls in flight for the scenario table (default 32)
  --workers <n>         load worker threads (default 2)
  --flood <s>           Register flood length for the RSS check (default 60; quick 3)
  --only <a,b>          sections: table, curve, hash, flood, cold, argon2, h2load, instructions
                        (default: all but instructions; h2load is skipped when not installed)
  --scenarios <a,b>     table rows: validate, register, verify, register-verify, request-code,
                        login-code, request-login, login-password, mixed (the instructions
                        section counts validate, register, verify, request-code, login-code)
  --client <raw|node-http2>  load client: the bench's own HTTP/2 framing (default) or node:http2
  --store <sqlite|postgres|both>  the store(s) the scenario table runs on (default sqlite); postgres
                        starts a throwaway cluster (system binaries, fsync on) on the server's
                        core and adds round trips and PostgreSQL CPU per call. The other
                        sections always run on SQLite
  --nice-hash-threads   renice the server's libuv pool threads (where argon2 runs) to 19
  --cpu-prof            profile the real server in each measured window (bench/results/tmp/)
  --h2load-duration <s> h2load section: measured seconds per round, after --warmup (default 5;
                        quick 1); h2load (Debian nghttp2-client), 1 connection x 32 streams on
                        the load core, real and ceiling in alternating rounds: about 2 minutes
  --h2load-rounds <n>   h2load section: rounds per server and RPC (default 3)
  --instr-calls <n>     instructions section (valgrind callgrind; only with --only instructions:
                        about 10 minutes, quick 6): calls counted per round (default 1000; quick 300)
  --instr-warmup <n>    instructions section: calls before instrumentation (default 2000; quick 300)
  --instr-rounds <n>    instructions section: counted rounds at most per scenario, until two in
                        a row agree within 1 % on the main thread (default 8; quick 3)
  --out <dir>           where results go (default bench/results, quick bench/results/tmp)`

const here = dirname(fileURLToPath(import.meta.url))
const root = join(here, '..', '..')

function parseOptions(argv: readonly string[]): Options {
  const quick = argv.includes('--quick')
  const value = (name: string): string | undefined => {
    const i = argv.indexOf(name)
    return i >= 0 ? argv[i + 1] : undefined
  }
  const num = (name: string, fallback: number): number => {
    const raw = value(name)
    if (raw === undefined) return fallback
    const n = Number(raw)
    if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} needs a positive number`)
    return n
  }
  if (argv.includes('--help')) {
    process.stdout.write(HELP + '\n')
    process.exit(0)
  }
  const only = value('--only')
  const scenarios = value('--scenarios')
  const store = value('--store') ?? 'sqlite'
  if (!['sqlite', 'postgres', 'both'].includes(store)) {
    throw new Error('--store needs sqlite, postgres or both')
  }
  return {
    quick,
    durationMs: num('--duration', quick ? 0.6 : 8) * 1000,
    warmupMs: num('--warmup', quick ? 0.25 : 2) * 1000,
    concurrency: num('--concurrency', 32),
    workers: num('--workers', 2),
    connections: 2,
    floodMs: num('--flood', quick ? 3 : 60) * 1000,
    curve: quick ? [1, 32] : [1, 2, 4, 8, 16, 32, 64, 128],
    curveMs: quick ? 500 : 3000,
    curveWarmupMs: quick ? 200 : 1000,
    hashLevels: quick ? [2] : [1, 2, 3, 4],
    hashMs: quick ? 1500 : 6000,
    hashWarmupMs: quick ? 300 : 1500,
    coldStarts: quick ? 1 : 5,
    argonLevels: quick ? [2] : [1, 2, 4],
    argonSeconds: quick ? 1 : 3,
    only: only === undefined ? undefined : new Set(only.split(',')),
    scenarios: scenarios === undefined ? undefined : new Set(scenarios.split(',')),
    cpuProf: argv.includes('--cpu-prof'),
    niceHashThreads: argv.includes('--nice-hash-threads'),
    client: value('--client') === 'node-http2' ? 'node-http2' : 'raw',
    stores: store === 'both' ? ['sqlite', 'postgres'] : [store as Store],
    outDir: value('--out') ?? join(root, 'bench', 'results', quick ? 'tmp' : ''),
    h2loadMs: num('--h2load-duration', quick ? 1 : 5) * 1000,
    h2loadRounds: num('--h2load-rounds', 3),
    instrCalls: num('--instr-calls', quick ? 300 : 1000),
    instrWarmup: num('--instr-warmup', quick ? 300 : 2000),
    instrRounds: num('--instr-rounds', quick ? 3 : 8),
  }
}

// ---------------------------------------------------------------------------------------------
// Processes, cores and /proc

const CORES = availableParallelism()
const hasTaskset = ((): boolean => {
  try {
    execFileSync('taskset', ['-p', String(process.pid)], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
})()
const PIN = hasTaskset && CORES >= 2
const SERVER_CPUS = '0'
const LOAD_CPUS = CORES === 2 ? '1' : `1-${CORES - 1}`
const ALL_CPUS = `0-${CORES - 1}`
const CLK_TCK = getconf('CLK_TCK', 100)
const PAGE_SIZE = getconf('PAGESIZE', 4096)

function getconf(name: string, fallback: number): number {
  try {
    return Number(execFileSync('getconf', [name]).toString().trim()) || fallback
  } catch {
    return fallback
  }
}

function setAffinity(pid: number, cpuList: string): void {
  if (PIN) execFileSync('taskset', ['-a', '-p', '-c', cpuList, String(pid)], { stdio: 'ignore' })
}

/** cpuSeconds is utime + stime of a process (all its threads) from /proc/<pid>/stat. */
function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK
  } catch {
    return Number.NaN
  }
}

/** niceThreads lowers the scheduling priority of a process's threads with the given name. */
function niceThreads(pid: number, name: string, nice: number): void {
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      if (readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim() === name) {
        setPriority(Number(tid), nice)
      }
    } catch {
      // the thread ended meanwhile
    }
  }
}

function rssBytes(pid: number): number {
  try {
    return Number(readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ')[1]) * PAGE_SIZE
  } catch {
    return Number.NaN
  }
}

interface ServerStats {
  rssBytes: number
  eventLoopP99Ms: number
  eventLoopMaxMs: number
  /** Queries sent to PostgreSQL since the server started; undefined on SQLite. */
  dbQueries: number | undefined
}

interface ChildMessage {
  type: string
  port?: number
  startupMs?: number
  /** 'sample': when the server read its query count (absolute ms). */
  t?: number
  /** Queries sent to PostgreSQL since start ('sample' and 'stats'); absent on SQLite. */
  dbQueries?: number
}

/** A server-side count read at a known time (performance.timeOrigin-based ms). */
interface CountSample {
  t: number
  value: number
}

/** NodeProcess is a bench child (real server, ceiling or helper) on chosen cores, with IPC. */
class NodeProcess {
  port = 0
  startupMs = 0
  /** The PostgreSQL cluster this server stores in: its CPU and round trips are measured too. */
  cluster: BenchCluster | undefined
  /** The server's query count, read on request during a phase (cleared by runPhases). */
  readonly querySamples: CountSample[] = []
  readonly #waiters: ((message: ChildMessage & Partial<ServerStats>) => void)[] = []
  readonly #sampleWaiters: { after: number; resolve: () => void }[] = []

  private constructor(
    readonly child: ChildProcess,
    readonly logFile: string,
  ) {
    child.on('message', (message: ChildMessage & Partial<ServerStats>) => {
      if (message.type === 'sample') {
        const t = message.t ?? 0
        if (message.dbQueries !== undefined) {
          this.querySamples.push({ t, value: message.dbQueries })
        }
        for (const waiter of [...this.#sampleWaiters]) {
          if (t >= waiter.after) waiter.resolve()
        }
        return
      }
      this.#waiters.shift()?.(message)
    })
  }

  get pid(): number {
    return this.child.pid ?? 0
  }

  static async start(
    script: string,
    options: { env?: NodeJS.ProcessEnv; cpus?: string; logFile: string; execArgv?: string[] },
  ): Promise<NodeProcess> {
    const argv = [...(options.execArgv ?? []), join(here, script)]
    const log = openSync(options.logFile, 'a')
    const child =
      PIN && options.cpus !== undefined
        ? spawn('taskset', ['-c', options.cpus, process.execPath, ...argv], {
            env: options.env ?? process.env,
            stdio: ['ignore', log, log, 'ipc'],
          })
        : spawn(process.execPath, argv, {
            env: options.env ?? process.env,
            stdio: ['ignore', log, log, 'ipc'],
          })
    closeSync(log)
    const node = new NodeProcess(child, options.logFile)
    const ready = await Promise.race([
      node.next(),
      new Promise<undefined>((resolve) =>
        child.once('exit', () => {
          resolve(undefined)
        }),
      ),
      sleep(30_000).then(() => undefined),
    ])
    if (ready?.type !== 'ready') {
      child.kill('SIGKILL')
      throw new Error(`${script} did not start:\n${tail(options.logFile)}`)
    }
    node.port = ready.port ?? 0
    node.startupMs = ready.startupMs ?? 0
    return node
  }

  next(): Promise<ChildMessage & Partial<ServerStats>> {
    return new Promise((resolve) => this.#waiters.push(resolve))
  }

  /** Asks for the query count now (answered asynchronously into querySamples). */
  requestSample(): void {
    if (this.child.connected) this.child.send({ type: 'sample' })
  }

  /** A query count read at or after `after` (absolute ms); gives up after 5 s. */
  async sampleAfter(after: number): Promise<void> {
    if (!this.child.connected) return
    const waiter = { after, resolve: (): void => undefined }
    const sampled = new Promise<void>((resolve) => {
      waiter.resolve = resolve
    })
    this.#sampleWaiters.push(waiter)
    this.requestSample()
    await Promise.race([sampled, sleep(5_000)])
    this.#sampleWaiters.splice(this.#sampleWaiters.indexOf(waiter), 1)
  }

  resetEventLoop(label: string): void {
    if (this.child.connected) this.child.send({ type: 'reset', label })
  }

  async stats(): Promise<ServerStats | undefined> {
    if (!this.child.connected) return undefined
    const reply = this.next()
    this.child.send({ type: 'stats' })
    const message = await Promise.race([reply, sleep(5_000).then(() => undefined)])
    if (message?.type !== 'stats') return undefined
    return {
      rssBytes: message.rssBytes ?? 0,
      eventLoopP99Ms: message.eventLoopP99Ms ?? 0,
      eventLoopMaxMs: message.eventLoopMaxMs ?? 0,
      dbQueries: message.dbQueries,
    }
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return
    const exited = new Promise<void>((resolve) =>
      this.child.once('exit', () => {
        resolve()
      }),
    )
    if (this.child.connected) this.child.disconnect()
    else this.child.kill('SIGTERM')
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 20_000)
    await exited
    clearTimeout(timer)
  }
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-15).join('\n')
  } catch {
    return '(no log)'
  }
}

// ---------------------------------------------------------------------------------------------
// Load phases

const now = (): number => performance.timeOrigin + performance.now()
const codes = new Int32Array(new SharedArrayBuffer(CODE_SLOTS * 4))
const PASSWORD = 'correct horse battery staple'
// Real numbers start at 0 and are used once; the ceiling's at 2·10^8 (it never sends a code).
let nextRealIndex = 0
let nextCeilingIndex = 200_000_000

interface PhaseSpec {
  target: NodeProcess
  ceiling: boolean
  scenario: Scenario
  concurrency: number
  warmupMs: number
  durationMs: number
  workers?: number
  pool?: number[]
  freshCount?: number
  tokens?: string[]
  passwordUsers?: number[]
  keepTokens?: number
  ratePerSecond?: number
  registerPassword?: boolean
  clientAddresses?: number
}

interface RpcFigures {
  calls: number
  callsPerSecond: number
  latency: Latency
  statuses: Record<string, number>
}

interface PhaseResult {
  scenario: Scenario
  server: 'real' | 'ceiling'
  concurrency: number
  windowSeconds: number
  calls: number
  callsPerSecond: number
  latency: Latency
  statuses: Record<string, number>
  perRpc: Record<string, RpcFigures>
  missingCodes: number
  serverCpuPercent: number
  /** Server CPU time per call: robust to a shared machine where throughput is not. */
  serverCpuUsPerCall: number
  loadCpuPercent: number
  serverRssMaxMB: number
  eventLoopP99Ms: number | undefined
  eventLoopMaxMs: number | undefined
  /**
   * PostgreSQL store only (null on SQLite, where statements are calls into the process, and on
   * the ceiling): queries the server sent in the window per call, and the CPU of the cluster's
   * processes (the Node server's own is serverCpu*).
   */
  dbRoundTripsPerCall: number | null
  dbCpuPercent: number | null
  dbCpuUsPerCall: number | null
  /** What the real server logged during the phase, warm-up included. */
  serverLog: ServerLogSummary | undefined
  produced: number[]
  tokens: string[]
}

interface ServerLogSummary {
  /** Calls the server logged with a status other than OK, by "rpc status". */
  nonOk: Record<string, number>
  /** Lines at warn level and above (and lines that are not JSON), by message. */
  problems: Record<string, number>
}

function fileSize(file: string): number {
  try {
    return statSync(file).size
  } catch {
    return 0
  }
}

/** summariseServerLog reads the server's log from byte `from` to its end (pino JSON lines). */
function summariseServerLog(file: string, from: number): ServerLogSummary {
  const summary: ServerLogSummary = { nonOk: {}, problems: {} }
  const count = (into: Record<string, number>, key: string): void => {
    into[key] = (into[key] ?? 0) + 1
  }
  let text: string
  try {
    const fd = openSync(file, 'r')
    try {
      const buffer = Buffer.alloc(Math.max(0, fileSize(file) - from))
      readSync(fd, buffer, 0, buffer.length, from)
      text = buffer.toString('utf8')
    } finally {
      closeSync(fd)
    }
  } catch {
    return summary
  }
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue
    let entry: { level?: unknown; msg?: unknown; rpc?: unknown; status?: unknown; err?: unknown }
    try {
      entry = JSON.parse(line) as typeof entry
    } catch {
      count(summary.problems, `(not JSON) ${line.slice(0, 120)}`)
      continue
    }
    if (typeof entry.status === 'string' && entry.status !== 'OK') {
      count(summary.nonOk, `${String(entry.rpc)} ${entry.status}`)
    }
    if (typeof entry.level === 'number' && entry.level >= 40) {
      const err = entry.err as { message?: unknown } | undefined
      const reason = typeof err?.message === 'string' ? `: ${err.message.slice(0, 120)}` : ''
      count(summary.problems, `${String(entry.msg)}${reason}`)
    }
  }
  return summary
}

/** The value of a sampled count at time t, linearly between the samples around it. */
function interpolate(samples: readonly CountSample[], t: number): number {
  let previous = samples[0]
  if (previous === undefined) return Number.NaN
  for (const s of samples) {
    if (s.t >= t) {
      const span = s.t - previous.t
      return span <= 0
        ? s.value
        : previous.value + ((s.value - previous.value) * (t - previous.t)) / span
    }
    previous = s
  }
  return previous.value
}

let options: Options
let sink: SmsSink

/** runPhases runs load phases side by side (same start, same clock) and measures each. */
async function runPhases(specs: readonly PhaseSpec[]): Promise<PhaseResult[]> {
  const first = specs[0]
  if (first === undefined) return []
  const threads: Worker[] = []
  const loaded: Promise<unknown>[] = []
  const runs = specs.map((spec) => {
    const workerCount = Math.max(1, Math.min(spec.workers ?? options.workers, spec.concurrency))
    const freshCount = spec.freshCount ?? 5_000_000
    const base = spec.ceiling ? nextCeilingIndex : nextRealIndex
    const pool = spec.pool ?? []
    const workers = Array.from({ length: workerCount }, (_, w) => {
      const slots =
        Math.floor(spec.concurrency / workerCount) + (w < spec.concurrency % workerCount ? 1 : 0)
      const workerSpec: WorkerSpec = {
        id: w,
        authority: `http://127.0.0.1:${spec.target.port}`,
        scenario: spec.scenario,
        concurrency: slots,
        connections: Math.min(slots, options.connections),
        startAt: 0, // sent once every worker has loaded, below
        warmupMs: spec.warmupMs,
        durationMs: spec.durationMs,
        ceiling: spec.ceiling,
        codes: codes.buffer,
        fresh: {
          next: base + w,
          stride: workerCount,
          end: base + w + Math.ceil(freshCount / workerCount) * workerCount,
        },
        pool: pool.filter((_, i) => i % workerCount === w),
        tokens: spec.tokens ?? [],
        passwordUsers: spec.passwordUsers ?? [],
        password: PASSWORD,
        registerPassword: spec.registerPassword ?? false,
        ratePerSecond:
          spec.ratePerSecond === undefined
            ? undefined
            : (spec.ratePerSecond * slots) / spec.concurrency,
        keepTokens: Math.ceil((spec.keepTokens ?? 0) / workerCount),
        clientAddresses: spec.clientAddresses ?? 4096,
        client: options.client,
      }
      const worker = new Worker(join(here, 'load-worker.js'), { workerData: workerSpec })
      threads.push(worker)
      let isLoaded!: () => void
      loaded.push(new Promise<void>((resolve) => (isLoaded = resolve)))
      return new Promise<WorkerResult>((resolve, reject) => {
        worker.on('message', (message: WorkerResult | 'loaded') => {
          if (message === 'loaded') {
            isLoaded()
            return
          }
          resolve(message)
          void worker.terminate()
        })
        worker.once('error', reject)
      })
    })
    return { spec, workers: Promise.all(workers), base }
  })
  // A worker takes a few hundred ms to load on a busy machine: the phase's clock starts once every
  // one of them can call (or fails as soon as one fails).
  await Promise.race([Promise.all(loaded), Promise.all(runs.map((r) => r.workers))])
  const startAt = now() + (options.quick ? 50 : 100)
  for (const thread of threads) thread.postMessage(startAt)
  const warmEnd = startAt + first.warmupMs

  // CPU and memory, sampled from outside, plus the event-loop monitor inside the real server.
  // On PostgreSQL also the cluster's CPU, and the server's query count (asked over IPC, read by
  // the server with its own timestamp, so an event loop late to answer does not skew it).
  const target = first.target
  const cluster = first.ceiling ? undefined : target.cluster
  const logFrom = first.ceiling ? 0 : fileSize(target.logFile)
  target.querySamples.length = 0
  const samples: { t: number; server: number; load: number; rss: number; db: number }[] = []
  const sample = (): void => {
    samples.push({
      t: now(),
      server: cpuSeconds(target.pid),
      load: cpuSeconds(process.pid),
      rss: rssBytes(target.pid),
      db: cluster?.cpuSeconds(CLK_TCK) ?? Number.NaN,
    })
  }
  sample()
  const sampler = setInterval(sample, 100)
  // The query count more often: it is cheap (one IPC message), and calls come in bursts.
  if (cluster !== undefined) target.requestSample()
  const querySampler =
    cluster === undefined
      ? undefined
      : setInterval(() => {
          target.requestSample()
        }, 20)
  const resetTimer = setTimeout(
    () => {
      target.resetEventLoop(first.scenario)
    },
    Math.max(0, warmEnd - now()),
  )
  const results = await Promise.all(runs.map(async (r) => ({ ...r, results: await r.workers })))
  clearInterval(sampler)
  clearInterval(querySampler)
  clearTimeout(resetTimer)
  sample()
  if (cluster !== undefined) await target.sampleAfter(now())
  const loopStats = first.ceiling ? undefined : await target.stats()
  const serverLog = first.ceiling ? undefined : summariseServerLog(target.logFile, logFrom)

  return results.map(({ spec, results: workerResults, base }) => {
    const endAt = startAt + spec.warmupMs + spec.durationMs
    const exhausted = workerResults.map((r) => r.exhaustedAt).filter((t): t is number => t !== null)
    const windowEnd = Math.min(endAt, ...exhausted)
    const windowStart = startAt + spec.warmupMs
    const windowSeconds = (windowEnd - windowStart) / 1000
    const used = Math.max(...workerResults.map((r) => r.freshNext))
    if (spec.ceiling) nextCeilingIndex = Math.max(nextCeilingIndex, used, base)
    else nextRealIndex = Math.max(nextRealIndex, used, base)

    const perRpcLatency = new Map<number, number[]>()
    const statuses: Record<string, number> = {}
    const perRpcStatuses = new Map<number, Record<string, number>>()
    const all: number[] = []
    for (const r of workerResults) {
      for (let i = 0; i < r.count; i++) {
        const end = r.end[i] ?? 0
        if (end < windowStart || end > windowEnd) continue
        const rpc = r.rpc[i] ?? 0
        const latency = r.latencyUs[i] ?? 0
        const status = STATUS_NAMES[r.status[i] ?? -1] ?? String(r.status[i])
        all.push(latency)
        let list = perRpcLatency.get(rpc)
        if (list === undefined) perRpcLatency.set(rpc, (list = []))
        list.push(latency)
        statuses[status] = (statuses[status] ?? 0) + 1
        let s = perRpcStatuses.get(rpc)
        if (s === undefined) perRpcStatuses.set(rpc, (s = {}))
        s[status] = (s[status] ?? 0) + 1
      }
    }
    const perRpc: Record<string, RpcFigures> = {}
    for (const [rpc, list] of [...perRpcLatency].sort((a, b) => a[0] - b[0])) {
      perRpc[RPCS[rpc] ?? String(rpc)] = {
        calls: list.length,
        callsPerSecond: round(list.length / windowSeconds, 1),
        latency: summarise(Float32Array.from(list)),
        statuses: perRpcStatuses.get(rpc) ?? {},
      }
    }
    const at = (t: number, key: 'server' | 'load' | 'db'): number => {
      let best = samples[0]
      for (const s of samples) if (Math.abs(s.t - t) < Math.abs((best?.t ?? 0) - t)) best = s
      return best?.[key] ?? Number.NaN
    }
    const percent = (key: 'server' | 'load' | 'db'): number =>
      round((100 * (at(windowEnd, key) - at(windowStart, key))) / windowSeconds, 1)
    const perCall = (cpuPercent: number): number =>
      round((cpuPercent * 1e4) / (all.length / windowSeconds), 1)
    const queries =
      interpolate(target.querySamples, windowEnd) - interpolate(target.querySamples, windowStart)
    const rssInWindow = samples.filter((s) => s.t >= windowStart && s.t <= windowEnd)
    return {
      scenario: spec.scenario,
      server: spec.ceiling ? 'ceiling' : 'real',
      concurrency: spec.concurrency,
      windowSeconds: round(windowSeconds, 2),
      calls: all.length,
      callsPerSecond: round(all.length / windowSeconds, 1),
      latency: summarise(Float32Array.from(all)),
      statuses,
      perRpc,
      missingCodes: workerResults.reduce((n, r) => n + r.missingCodes, 0),
      serverCpuPercent: percent('server'),
      serverCpuUsPerCall: perCall(percent('server')),
      loadCpuPercent: percent('load'),
      serverRssMaxMB: round(Math.max(...rssInWindow.map((s) => s.rss)) / 2 ** 20, 1),
      eventLoopP99Ms: loopStats === undefined ? undefined : round(loopStats.eventLoopP99Ms, 2),
      eventLoopMaxMs: loopStats === undefined ? undefined : round(loopStats.eventLoopMaxMs, 2),
      dbRoundTripsPerCall:
        cluster === undefined || all.length === 0 ? null : round(queries / all.length, 2),
      dbCpuPercent: cluster === undefined ? null : percent('db'),
      dbCpuUsPerCall: cluster === undefined ? null : perCall(percent('db')),
      serverLog,
      produced: workerResults.flatMap((r) => r.produced),
      tokens: workerResults.flatMap((r) => r.tokens),
    } satisfies PhaseResult
  })
}

async function runPhase(spec: PhaseSpec): Promise<PhaseResult> {
  const [result] = await runPhases([spec])
  if (result === undefined) throw new Error('no result')
  return result
}

/** setup runs an unmeasured phase that must succeed on every call (it prepares later phases). */
async function setup(spec: Omit<PhaseSpec, 'warmupMs' | 'durationMs'>): Promise<PhaseResult> {
  const result = await runPhase({ ...spec, warmupMs: 0, durationMs: 120_000 })
  const bad = Object.entries(result.statuses).filter(([s]) => s !== 'OK')
  if (bad.length > 0 || result.missingCodes > 0) {
    throw new Error(
      `setup ${spec.scenario} failed: ${JSON.stringify(result.statuses)}, ` +
        `${result.missingCodes} codes missing; see ${spec.target.logFile}`,
    )
  }
  return result
}

// ---------------------------------------------------------------------------------------------
// Servers

let tmp: string

function realServerEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    OTPAUTH_ADDRESS: '127.0.0.1:0',
    OTPAUTH_DATABASE: join(
      tmp,
      `otpauth-${String(Date.now())}-${String(Math.random()).slice(2, 8)}.db`,
    ),
    OTPAUTH_SMS: 'webhook',
    OTPAUTH_SMS_WEBHOOK_URL: sink.url,
    // The load comes from loopback and names its clients in x-forwarded-for (4096 per worker),
    // as a front proxy would: lockouts and per-client caps see many addresses.
    OTPAUTH_TRUSTED_PROXIES: '127.0.0.1/32',
    OTPAUTH_SENDS_PER_CLIENT_PER_HOUR: '1000000',
    // The load sends to many numbers in few prefixes; the SMS budgets would refuse it.
    OTPAUTH_SMS_BUDGET_PER_DAY: '100000000',
    OTPAUTH_SMS_BUDGET_PER_COUNTRY_PER_DAY: '100000000',
    OTPAUTH_SMS_BUDGET_PER_PREFIX_PER_HOUR: '10000000',
    // Each number gets its login code seconds after its sign-up code; the check still runs.
    OTPAUTH_RESEND_COOLDOWN_SECONDS: '0',
    OTPAUTH_LOG_LEVEL: 'info',
    // The scenario table keeps up to 80k codes live at once (numbers made ahead for a whole
    // window at the ceiling's pace): twice the image's default cache, with twice its heap cap.
    // The flood and the cold starts run with the image's own settings (IMAGE_*).
    OTPAUTH_CACHE_MAX: '100000',
    NODE_OPTIONS: '--max-old-space-size=320',
    ...extra,
  }
}

// What the image runs with (Dockerfile and the default OTPAUTH_CACHE_MAX).
const IMAGE_NODE_OPTIONS = '--max-old-space-size=160'
const IMAGE_SETTINGS = { OTPAUTH_CACHE_MAX: '50000', NODE_OPTIONS: IMAGE_NODE_OPTIONS }

async function startReal(
  name: string,
  extra: Record<string, string> = {},
  cpus = SERVER_CPUS,
): Promise<NodeProcess> {
  // --cpu-prof: one profile per measured window, written by the bench entry (see server-entry.ts).
  const profile = options.cpuProf
    ? { BENCH_CPU_PROFILE_DIR: join(root, 'bench', 'results', 'tmp') }
    : {}
  return NodeProcess.start('server-entry.js', {
    env: realServerEnv({ ...profile, ...extra }),
    cpus,
    logFile: join(tmp, `${name}.log`),
  })
}

// ---------------------------------------------------------------------------------------------
// Sections

interface TableRow {
  store: Store
  scenario: string
  real: PhaseResult
  ceiling: PhaseResult
  ratio: number
  /** Ceiling CPU per call over the service's: the ratio a saturated core would show. */
  cpuRatio: number
  p99Ratio: number
}

const SCENARIO_TITLES: Record<Scenario, string> = {
  validate: 'ValidateSession',
  register: 'Register (no password, webhook SMS)',
  verify: 'VerifyOtp',
  'register-verify': 'Register + VerifyOtp',
  'request-code': 'RequestLoginCode',
  'login-code': 'Login(code)',
  'request-login': 'RequestLoginCode + Login(code)',
  'login-password': 'Login(password)',
  mixed: 'Mixed (70 % Validate, 15 % sign-up, 15 % code login + Logout)',
}

function log(line: string): void {
  process.stdout.write(line + '\n')
}

function describe(r: PhaseResult): string {
  const bad = Object.entries(r.statuses)
    .filter(([s]) => s !== 'OK')
    .map(([s, n]) => `${s}=${n}`)
  const findings = [...bad, ...(r.missingCodes > 0 ? [`NO_CODE=${r.missingCodes}`] : [])]
  return (
    `${r.server.padEnd(7)} ${String(Math.round(r.callsPerSecond)).padStart(6)} calls/s ` +
    `p50 ${r.latency.p50} p99 ${r.latency.p99} max ${r.latency.max} ms, ` +
    `server cpu ${r.serverCpuPercent} % (${r.serverCpuUsPerCall} µs/call), load cpu ${r.loadCpuPercent} %` +
    (r.eventLoopP99Ms === undefined ? '' : `, loop p99 ${r.eventLoopP99Ms} ms`) +
    (r.dbCpuUsPerCall === null
      ? ''
      : `, postgres cpu ${r.dbCpuPercent ?? 0} % (${r.dbCpuUsPerCall} µs/call), ` +
        `${r.dbRoundTripsPerCall ?? '?'} round trips/call`) +
    `, rss ${r.serverRssMaxMB} MB, ${r.windowSeconds} s` +
    (findings.length > 0 ? `  FINDINGS: ${findings.join(' ')}` : '')
  )
}

/** scenarioTable runs the table's scenarios on one store, adding a row to `rows` per scenario. */
async function scenarioTable(
  store: Store,
  real: NodeProcess,
  ceiling: NodeProcess,
  rows: TableRow[],
): Promise<void> {
  const c = options.concurrency
  const base = { concurrency: c, warmupMs: options.warmupMs, durationMs: options.durationMs }
  const ceilingRates = new Map<Scenario, number>()
  const realRates: number[] = []
  const compare = async (
    scenario: Scenario,
    how: {
      shared?: Partial<PhaseSpec>
      real?: () => Partial<PhaseSpec>
      before?: () => Promise<void>
    } = {},
  ): Promise<{ produced: number[] }> => {
    if (options.scenarios !== undefined && !options.scenarios.has(scenario)) return { produced: [] }
    const ceil = await runPhase({
      ...base,
      ...how.shared,
      target: ceiling,
      ceiling: true,
      scenario,
    })
    ceilingRates.set(scenario, ceil.callsPerSecond)
    await how.before?.()
    const result = await runPhase({
      ...base,
      ...how.shared,
      ...how.real?.(),
      target: real,
      ceiling: false,
      scenario,
    })
    if (scenario !== 'validate') realRates.push(result.callsPerSecond)
    rows.push({
      store,
      scenario: SCENARIO_TITLES[scenario],
      real: result,
      ceiling: ceil,
      ratio: round(result.callsPerSecond / ceil.callsPerSecond, 2),
      cpuRatio: round(ceil.serverCpuUsPerCall / result.serverCpuUsPerCall, 2),
      p99Ratio: round(result.latency.p99 / ceil.latency.p99, 2),
    })
    log(`${SCENARIO_TITLES[scenario]} on ${store} (concurrency ${result.concurrency})`)
    log(`  ${describe(ceil)}`)
    log(`  ${describe(result)}`)
    return result
  }
  // Enough numbers for the real run to last its whole window at the ceiling's pace; the table's
  // server holds 100k codes (realServerEnv), so never more live codes than 80k. On PostgreSQL, whose
  // durable commits make writes far slower than the ceiling, 3 × the fastest write scenario so far
  // instead: making numbers at the ceiling's pace there would take minutes per scenario.
  const need = (scenario: Scenario): number => {
    const ceilingRate = ceilingRates.get(scenario) ?? 5000
    const rate =
      store === 'postgres' && realRates.length > 0
        ? Math.min(ceilingRate, 3 * Math.max(...realRates))
        : ceilingRate
    const cap = options.quick ? 2_000 : 80_000
    return Math.min(cap, Math.ceil((rate * (options.warmupMs + options.durationMs)) / 1000))
  }
  const make = async (scenario: Scenario, count: number, pool?: number[]): Promise<number[]> =>
    count <= 0
      ? []
      : (
          await setup({
            target: real,
            ceiling: false,
            scenario,
            concurrency: c,
            ...(pool === undefined ? { freshCount: count } : { pool: pool.splice(0, count) }),
          })
        ).produced

  log(`setup on ${store}: password users and sessions`)
  const passwordUsers = (
    await setup({
      target: real,
      ceiling: false,
      scenario: 'register-verify',
      concurrency: 8,
      freshCount: 64,
      registerPassword: true,
    })
  ).produced
  const sessions = options.quick ? 200 : 2000
  const sessionUsers = await make('register-verify', sessions)
  const tokens = (
    await setup({
      target: real,
      ceiling: false,
      scenario: 'request-login',
      concurrency: c,
      pool: sessionUsers,
      keepTokens: sessions,
    })
  ).tokens

  await compare('validate', { real: () => ({ tokens }) })

  // Each number is used once: Register leaves a sign-up code, VerifyOtp turns it into a verified
  // number, RequestLoginCode leaves a login code, Login(code) spends it.
  let registered = (await compare('register')).produced
  let verified: number[] = []
  const verifiedAtLeast = async (count: number): Promise<void> => {
    verified = verified.concat(await make('register-verify', count - verified.length))
  }
  verified = verified.concat(
    (
      await compare('verify', {
        before: async () => {
          registered = registered.concat(await make('register', need('verify') - registered.length))
        },
        real: () => ({ pool: registered }),
      })
    ).produced,
  )
  verified = verified.concat((await compare('register-verify')).produced)

  let codeSent: number[] = []
  const requestPool: number[] = []
  codeSent = (
    await compare('request-code', {
      before: async () => {
        await verifiedAtLeast(need('request-code'))
        requestPool.push(...verified.splice(0, need('request-code')))
      },
      real: () => ({ pool: requestPool }),
    })
  ).produced
  await compare('login-code', {
    before: async () => {
      const missing = need('login-code') - codeSent.length
      if (missing > 0) {
        await verifiedAtLeast(missing)
        codeSent = codeSent.concat(await make('request-code', missing, verified))
      }
    },
    real: () => ({ pool: codeSent }),
  })
  const pairPool: number[] = []
  await compare('request-login', {
    before: async () => {
      await verifiedAtLeast(need('request-login'))
      pairPool.push(...verified.splice(0, need('request-login')))
    },
    real: () => ({ pool: pairPool }),
  })
  // argon2 runs on libuv's pool: the server gets every core for this one, as in production.
  setAffinity(real.pid, ALL_CPUS)
  await compare('login-password', {
    shared: { concurrency: 8 },
    real: () => ({ passwordUsers }),
  })
  setAffinity(real.pid, SERVER_CPUS)
  await compare('mixed', { real: () => ({ tokens, pool: verified.splice(0, 20_000) }) })
}

interface PostgresRun {
  version: string
  /** Server settings given on the command line (the rest are initdb's defaults). */
  settings: Readonly<Record<string, string>>
  /** Where the cluster's processes run. */
  cpus: string
  /** The real server's startup (migrations included), spawn to listening. */
  serverStartupMs: number
  /** Queries the server sent over the whole run (setup phases included). */
  queries: number | undefined
  /** WARNING and worse lines of the cluster's log, by text. */
  clusterLog: Record<string, number>
  /** Why the PostgreSQL run stopped early, if it did. */
  error: string | undefined
}

/**
 * postgresTable runs the scenario table on a throwaway cluster (removed at the end, failure
 * included) with the real server on it. A failure is recorded, not thrown, so the SQLite figures
 * of the same run are still written; main fails the bench afterwards.
 */
async function postgresTable(ceiling: NodeProcess, rows: TableRow[]): Promise<PostgresRun> {
  const cpus = PIN ? SERVER_CPUS : ALL_CPUS
  log(`postgres: initdb and start a throwaway cluster on cpu ${cpus} (fsync on)`)
  const outcome: PostgresRun = {
    version: 'unknown',
    settings: CLUSTER_SETTINGS,
    cpus,
    serverStartupMs: 0,
    queries: undefined,
    clusterLog: {},
    error: undefined,
  }
  let cluster: BenchCluster
  try {
    cluster = await startCluster(PIN ? SERVER_CPUS : undefined)
  } catch (error) {
    outcome.error = error instanceof Error ? error.message : String(error)
    log(`postgres run failed: ${outcome.error}`)
    return outcome
  }
  outcome.version = cluster.version
  let real: NodeProcess | undefined
  try {
    const url = await cluster.createDatabase('otpauth_bench')
    real = await startReal('real-postgres', {
      OTPAUTH_DATABASE: url,
      OTPAUTH_CODE_HMAC_KEY: randomBytes(32).toString('hex'),
    })
    real.cluster = cluster
    outcome.serverStartupMs = round(real.startupMs, 1)
    await scenarioTable('postgres', real, ceiling, rows)
    outcome.queries = (await real.stats())?.dbQueries
  } catch (error) {
    outcome.error = error instanceof Error ? error.message : String(error)
    log(`postgres run failed: ${outcome.error}`)
    // The logs go with the results: the temporary directories are removed below.
    if (real !== undefined) copyFileSync(real.logFile, join(options.outDir, 'postgres-server.log'))
    copyFileSync(cluster.logFile, join(options.outDir, 'postgres-cluster.log'))
  } finally {
    await real?.stop()
    outcome.clusterLog = cluster.logProblems()
    await cluster.destroy()
  }
  return outcome
}

interface CurvePoint {
  concurrency: number
  real: PhaseResult
  ceiling: PhaseResult
}

async function concurrencyCurve(
  real: NodeProcess,
  ceiling: NodeProcess,
  tokens: string[],
): Promise<CurvePoint[]> {
  const points: CurvePoint[] = []
  for (const c of options.curve) {
    const spec = {
      concurrency: c,
      warmupMs: options.curveWarmupMs,
      durationMs: options.curveMs,
      scenario: 'validate' as const,
    }
    const ceil = await runPhase({ ...spec, target: ceiling, ceiling: true })
    const result = await runPhase({ ...spec, target: real, ceiling: false, tokens })
    points.push({ concurrency: c, real: result, ceiling: ceil })
    log(`ValidateSession at concurrency ${c}`)
    log(`  ${describe(ceil)}`)
    log(`  ${describe(result)}`)
  }
  return points
}

interface ArgonRate {
  concurrency: number
  verifiesPerSecond: number
}

async function argonRates(): Promise<ArgonRate[]> {
  const rates: ArgonRate[] = []
  for (const c of options.argonLevels) {
    const args = [join(here, 'argon2-rate.js'), String(c), String(options.argonSeconds)]
    const out = await new Promise<string>((resolve, reject) => {
      const child = PIN
        ? spawn('taskset', ['-c', ALL_CPUS, process.execPath, ...args])
        : spawn(process.execPath, args)
      let text = ''
      child.stdout.on('data', (d: Buffer) => (text += d.toString()))
      child.on('exit', (code) => {
        if (code === 0) resolve(text)
        else reject(new Error(`argon2-rate exited ${String(code)}`))
      })
    })
    const parsed = JSON.parse(out) as ArgonRate
    rates.push({ concurrency: c, verifiesPerSecond: round(parsed.verifiesPerSecond, 1) })
    log(`raw argon2id verify, ${c} in flight: ${round(parsed.verifiesPerSecond, 1)}/s`)
  }
  return rates
}

interface HashPoint {
  hashConcurrency: number
  loginsPerSecond: number
  loginLatency: Latency
  loginStatuses: Record<string, number>
  validateLatency: Latency
  validateStatuses: Record<string, number>
  eventLoopP99Ms: number | undefined
  serverCpuPercent: number
}

async function hashCurve(): Promise<HashPoint[]> {
  const points: HashPoint[] = []
  for (const level of options.hashLevels) {
    const server = await startReal(
      `hash-${level}`,
      { OTPAUTH_HASH_CONCURRENCY: String(level) },
      ALL_CPUS,
    )
    if (options.niceHashThreads) niceThreads(server.pid, 'libuv-worker', 19)
    try {
      const passwordUsers = (
        await setup({
          target: server,
          ceiling: false,
          scenario: 'register-verify',
          concurrency: 8,
          freshCount: options.quick ? 8 : 32,
          registerPassword: true,
        })
      ).produced
      const tokens = (
        await setup({
          target: server,
          ceiling: false,
          scenario: 'request-login',
          concurrency: 8,
          pool: passwordUsers.slice(),
          keepTokens: options.quick ? 8 : 32,
        })
      ).tokens
      const timing = { warmupMs: options.hashWarmupMs, durationMs: options.hashMs }
      const [login, validate] = await runPhases([
        {
          ...timing,
          target: server,
          ceiling: false,
          scenario: 'login-password',
          concurrency: 8,
          workers: 1,
          passwordUsers,
        },
        {
          ...timing,
          target: server,
          ceiling: false,
          scenario: 'validate',
          concurrency: 4,
          workers: 1,
          tokens,
          ratePerSecond: 200,
        },
      ])
      if (login === undefined || validate === undefined) throw new Error('no result')
      points.push({
        hashConcurrency: level,
        loginsPerSecond: login.callsPerSecond,
        loginLatency: login.latency,
        loginStatuses: login.statuses,
        validateLatency: validate.latency,
        validateStatuses: validate.statuses,
        eventLoopP99Ms: login.eventLoopP99Ms,
        serverCpuPercent: login.serverCpuPercent,
      })
      log(
        `hash concurrency ${level}: ${login.callsPerSecond} logins/s, ` +
          `ValidateSession p99 ${validate.latency.p99} ms (max ${validate.latency.max}), ` +
          `loop p99 ${String(login.eventLoopP99Ms)} ms, server cpu ${login.serverCpuPercent} %`,
      )
    } finally {
      await server.stop()
    }
  }
  return points
}

interface FloodResult {
  seconds: number
  registers: number
  callsPerSecond: number
  statuses: Record<string, number>
  rssMB: { t: number; mb: number }[]
  rssStartMB: number
  rssMidMB: number
  rssEndMB: number
  rssMaxMB: number
  secondHalfGrowthPercent: number
  /** Growth over the last third, when a flood of a minute or more has filled the caches. */
  lastThirdGrowthPercent: number
}

async function flood(): Promise<FloodResult> {
  const server = await startReal('flood', IMAGE_SETTINGS)
  try {
    const started = now()
    const series: { t: number; mb: number }[] = []
    const timer = setInterval(() => {
      series.push({ t: round((now() - started) / 1000, 1), mb: rssBytes(server.pid) / 2 ** 20 })
    }, 1000)
    series.push({ t: 0, mb: rssBytes(server.pid) / 2 ** 20 })
    const result = await runPhase({
      target: server,
      ceiling: false,
      scenario: 'register',
      concurrency: options.concurrency,
      warmupMs: 0,
      durationMs: options.floodMs,
    })
    clearInterval(timer)
    series.push({ t: round((now() - started) / 1000, 1), mb: rssBytes(server.pid) / 2 ** 20 })
    const mbAt = (fraction: number): number => {
      const t = (series.at(-1)?.t ?? 0) * fraction
      let best = series[0]
      for (const s of series) if (Math.abs(s.t - t) < Math.abs((best?.t ?? 0) - t)) best = s
      return round(best?.mb ?? 0, 1)
    }
    const mid = mbAt(0.5)
    const end = mbAt(1)
    const out: FloodResult = {
      seconds: result.windowSeconds,
      registers: result.calls,
      callsPerSecond: result.callsPerSecond,
      statuses: result.statuses,
      rssMB: series
        .filter((_, i) => i % Math.max(1, Math.floor(series.length / 30)) === 0)
        .map((s) => ({ t: s.t, mb: round(s.mb, 1) })),
      rssStartMB: mbAt(0),
      rssMidMB: mid,
      rssEndMB: end,
      rssMaxMB: round(Math.max(...series.map((s) => s.mb)), 1),
      secondHalfGrowthPercent: round((100 * (end - mid)) / mid, 1),
      lastThirdGrowthPercent: round((100 * (end - mbAt(2 / 3))) / mbAt(2 / 3), 1),
    }
    log(
      `Register flood ${out.seconds} s: ${out.registers} numbers (${out.callsPerSecond}/s), ` +
        `RSS ${out.rssStartMB} → ${out.rssMidMB} (half) → ${out.rssEndMB} MB (end), ` +
        `second half ${out.secondHalfGrowthPercent} %, last third ${out.lastThirdGrowthPercent} %, ` +
        JSON.stringify(out.statuses),
    )
    return out
  } finally {
    await server.stop()
  }
}

async function freePort(): Promise<number> {
  const server = createNetServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise<void>((resolve) =>
    server.close(() => {
      resolve()
    }),
  )
  return port
}

interface ColdStart {
  runsMs: number[]
  medianMs: number
}

/** What `npm start` and the image run, relative to the project root. */
const COLD_START_ENTRY = ['dist', 'bundle', 'otpauth.mjs']

/** accepts tells whether something listens on the loopback port (a TCP connect, closed at once). */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connectTcp(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => {
      resolve(false)
    })
  })
}

/** coldStarts times COLD_START_ENTRY (embedded default, new database) until SERVING. */
async function coldStarts(): Promise<ColdStart> {
  const runs: number[] = []
  const request = encodeHealthCheck('otpauth.v1.OtpAuth')
  for (let i = 0; i < options.coldStarts; i++) {
    const port = await freePort()
    const env = {
      ...process.env,
      OTPAUTH_ADDRESS: `127.0.0.1:${port}`,
      OTPAUTH_DATABASE: join(tmp, `cold-${i}`, 'otpauth.db'),
      NODE_OPTIONS: IMAGE_NODE_OPTIONS,
    }
    const logFile = join(tmp, `cold-${i}.log`)
    const out = openSync(logFile, 'a')
    const started = now()
    const args = [join(root, ...COLD_START_ENTRY)]
    const child = PIN
      ? spawn('taskset', ['-c', ALL_CPUS, process.execPath, ...args], {
          env,
          stdio: ['ignore', out, out],
        })
      : spawn(process.execPath, args, { env, stdio: ['ignore', out, out] })
    closeSync(out)
    let elapsed = Number.NaN
    while (now() - started < 10_000 && child.exitCode === null) {
      // An HTTP/2 session every 2 ms would take CPU the starting child needs on a small machine.
      if (!(await accepts(port))) {
        await sleep(2)
        continue
      }
      const connection = new GrpcConnection(`http://127.0.0.1:${port}`)
      const result = await connection.call('/grpc.health.v1.Health/Check', request, undefined, true)
      connection.close()
      if (result.status === 0 && isServing(result.message)) {
        elapsed = now() - started
        break
      }
      await sleep(2)
    }
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGTERM')
    await exited
    if (Number.isNaN(elapsed))
      throw new Error(`cold start never reached SERVING:\n${tail(logFile)}`)
    runs.push(round(elapsed, 1))
  }
  const result = { runsMs: runs, medianMs: median(runs) }
  log(`cold start to SERVING: median ${result.medianMs} ms (${runs.join(', ')})`)
  return result
}

// ---------------------------------------------------------------------------------------------
// Report

function machine(): Record<string, string | number> {
  return {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: CORES,
    memoryGB: round(totalmem() / 2 ** 30, 1),
    node: process.version,
    pinned: PIN ? `server on cpu ${SERVER_CPUS}, load on cpu ${LOAD_CPUS}` : 'no (taskset absent)',
  }
}

function ms(n: number | undefined): string {
  return n === undefined ? '–' : String(n)
}

function statusText(statuses: Record<string, number>, missing = 0): string {
  const bad = Object.entries(statuses)
    .filter(([s]) => s !== 'OK')
    .map(([s, n]) => `${s} ${n}`)
  if (missing > 0) bad.push(`NO_CODE ${missing}`)
  return bad.length === 0 ? 'all OK' : bad.join(', ')
}

interface Report {
  date: string
  machine: Record<string, string | number>
  loadBefore: number[]
  loadAfter: number[]
  options: Record<string, unknown>
  table: TableRow[]
  curve: CurvePoint[]
  argon2: ArgonRate[]
  hashCurve: HashPoint[]
  flood: FloodResult | undefined
  coldStart: ColdStart | undefined
  serverStartupMs: number
  /** The PostgreSQL table run (--store postgres or both), undefined when it did not run. */
  postgres: PostgresRun | undefined
  h2load: H2loadResult | undefined
  instructions: InstructionsResult | undefined
  targets: { target: string; value: string; met: boolean | undefined }[]
}

function targets(report: Report): Report['targets'] {
  const out: Report['targets'] = []
  // The targets are the embedded default's: SQLite rows only (the PostgreSQL rows are reported).
  const sqliteRows = report.table.filter((r) => r.store === 'sqlite')
  const row = (s: Scenario): TableRow | undefined =>
    sqliteRows.find((r) => r.scenario === SCENARIO_TITLES[s])
  const ratio = (s: Scenario, min: number): void => {
    const r = row(s)
    if (r !== undefined)
      out.push({
        target: `${SCENARIO_TITLES[s]} ≥ ${min} × ceiling`,
        value: `${r.ratio}`,
        met: r.ratio >= min,
      })
  }
  // Issue 11's targets.
  ratio('validate', 0.85)
  ratio('verify', 0.75)
  ratio('login-code', 0.5)
  ratio('request-code', 0.5)
  ratio('register', 0.5)
  for (const r of sqliteRows) {
    if (r.real.scenario === 'login-password') continue
    out.push({
      target: `${r.scenario}: p99 ≤ 1.5 × ceiling p99`,
      value: `${r.p99Ratio} (${r.real.latency.p99} vs ${r.ceiling.latency.p99} ms)`,
      met: r.p99Ratio <= 1.5,
    })
  }
  // The original Django API, measured per core on this kind of machine: 447 Register/s and 161
  // sign-up flows (Register + VerifyOtp) per second. Ours per core: one second of server CPU.
  const register = row('register')
  if (register !== undefined) {
    const perCore = 1e6 / register.real.serverCpuUsPerCall
    out.push({
      target: 'Register per server core ≥ 15 × the Django API (447/s)',
      value: `${Math.round(perCore)}/s (${round(perCore / 447, 1)} ×)`,
      met: perCore >= 15 * 447,
    })
  }
  const signUp = row('register-verify')
  if (signUp !== undefined) {
    // Two RPCs per flow: the scenario's CPU per call is the mean of the two.
    const perCore = 1e6 / (2 * signUp.real.serverCpuUsPerCall)
    out.push({
      target: 'sign-up flows (Register + VerifyOtp) per server core ≥ 15 × the Django API (161/s)',
      value: `${Math.round(perCore)}/s (${round(perCore / 161, 1)} ×)`,
      met: perCore >= 15 * 161,
    })
  }
  // PostgreSQL mode: round trips per call, and CPU per call (the server's plus the cluster's)
  // against the same scenario on SQLite.
  const postgresRows = report.table.filter((r) => r.store === 'postgres')
  const trips: [Scenario, number][] = [
    ['validate', 1],
    ['verify', 2],
    ['login-code', 2],
    ['register', 3],
  ]
  for (const [s, max] of trips) {
    const r = postgresRows.find((p) => p.scenario === SCENARIO_TITLES[s])
    const measured = r?.real.dbRoundTripsPerCall
    if (measured === undefined || measured === null) continue
    out.push({
      target: `PostgreSQL ${SCENARIO_TITLES[s]}: ≤ ${max} round trips per call`,
      value: `${measured}`,
      met: measured <= max + 0.05,
    })
  }
  for (const r of postgresRows) {
    const lite = sqliteRows.find((l) => l.scenario === r.scenario)
    if (lite === undefined || r.real.scenario === 'login-password') continue
    const total = r.real.serverCpuUsPerCall + (r.real.dbCpuUsPerCall ?? 0)
    const times = total / lite.real.serverCpuUsPerCall
    out.push({
      target: `PostgreSQL ${r.scenario}: CPU µs per call ≤ 2 × SQLite`,
      value:
        `${round(times, 2)} × (${Math.round(r.real.serverCpuUsPerCall)} server + ` +
        `${Math.round(r.real.dbCpuUsPerCall ?? 0)} PostgreSQL vs ${Math.round(lite.real.serverCpuUsPerCall)} µs)`,
      met: times <= 2,
    })
  }
  const ceilingCpu = Math.min(...report.table.map((r) => r.ceiling.serverCpuPercent))
  if (report.table.length > 0)
    out.push({
      target: 'ceiling server ≥ 90 % of its core (the load is not the bottleneck)',
      value: `${ceilingCpu} % (lowest scenario)`,
      met: ceilingCpu >= 90,
    })
  const raw = Math.max(0, ...report.argon2.map((a) => a.verifiesPerSecond))
  const pw = row('login-password')
  if (pw !== undefined && raw > 0)
    out.push({
      target: 'Login(password) ≥ 0.8 × raw argon2id rate (both cores)',
      value: `${round(pw.real.callsPerSecond / raw, 2)} (${pw.real.callsPerSecond} vs ${raw}/s)`,
      met: pw.real.callsPerSecond / raw >= 0.8,
    })
  for (const h of report.hashCurve) {
    out.push({
      target: `hash concurrency ${h.hashConcurrency}: ValidateSession p99 < 15 ms while hashing`,
      value:
        `${h.validateLatency.p99} ms, ${h.loginsPerSecond} logins/s` +
        (raw > 0 ? ` (${round(h.loginsPerSecond / raw, 2)} × raw)` : ''),
      met: h.validateLatency.p99 < 15,
    })
  }
  if (report.flood !== undefined)
    out.push({
      target: 'RSS flat over the Register flood once the caches are full (last third grows < 10 %)',
      value:
        `${report.flood.lastThirdGrowthPercent} % (${report.flood.rssStartMB} → ` +
        `${report.flood.rssMidMB} → ${report.flood.rssEndMB} MB over ${report.flood.seconds} s)`,
      met: report.flood.lastThirdGrowthPercent < 10,
    })
  if (report.flood !== undefined)
    out.push({
      target: 'RSS within 256 MB at the default OTPAUTH_CACHE_MAX (Register flood, maximum)',
      value: `${report.flood.rssMaxMB} MB`,
      met: report.flood.rssMaxMB <= 256,
    })
  if (report.h2load !== undefined) out.push(...h2loadTargets(report.h2load))
  if (report.coldStart !== undefined)
    out.push({
      target: 'cold start to SERVING < 500 ms',
      value: `${report.coldStart.medianMs} ms (median)`,
      met: report.coldStart.medianMs < 500,
    })
  return out
}

function markdown(report: Report): string {
  const m = report.machine
  const lines: string[] = [
    `# OtpAuth benchmark`,
    '',
    `${report.date}; ${String(m['cpu'])}, ${String(m['cores'])} cores, ${String(m['memoryGB'])} GB, ` +
      `Node ${String(m['node'])}; pinned: ${String(m['pinned'])}. ` +
      `Load average before ${report.loadBefore.join(' ')}, after ${report.loadAfter.join(' ')} ` +
      `(the machine is shared: compare ratios, not absolute numbers).`,
    '',
  ]
  if (report.table.length > 0) {
    const c = report.table[0]?.real.concurrency ?? options.concurrency
    lines.push(
      `## Scenarios (closed loop, ${c} calls in flight; Login(password) 8; ` +
        `${options.durationMs / 1000} s measured after ${options.warmupMs / 1000} s warm-up)`,
      '',
      '| scenario | store | calls/s | ceiling calls/s | ratio | p50 ms | p90 ms | p99 ms | max ms | ceiling p99 ms | p99 ratio | statuses | server CPU % | ceiling CPU % | CPU µs/call | ceiling µs/call | CPU ratio | RSS MB | loop delay p99 ms |',
      '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    )
    for (const r of report.table) {
      const l = r.real.latency
      lines.push(
        `| ${r.scenario} | ${r.store} | ${Math.round(r.real.callsPerSecond)} | ${Math.round(r.ceiling.callsPerSecond)} | ` +
          `${r.real.scenario === 'login-password' ? '–' : r.ratio} | ${l.p50} | ${l.p90} | ${l.p99} | ${l.max} | ` +
          `${r.ceiling.latency.p99} | ${r.real.scenario === 'login-password' ? '–' : r.p99Ratio} | ` +
          `${statusText(r.real.statuses, r.real.missingCodes)} | ${r.real.serverCpuPercent} | ` +
          `${r.ceiling.serverCpuPercent} | ${r.real.serverCpuUsPerCall} | ${r.ceiling.serverCpuUsPerCall} | ` +
          `${r.real.scenario === 'login-password' ? '–' : r.cpuRatio} | ${r.real.serverRssMaxMB} | ${ms(r.real.eventLoopP99Ms)} |`,
      )
    }
    lines.push('', 'Per RPC inside the combined scenarios (real server):', '')
    lines.push(
      '| scenario | store | RPC | calls/s | p50 ms | p99 ms | statuses |',
      '| --- | --- | --- | ---: | ---: | ---: | --- |',
    )
    for (const r of report.table) {
      if (Object.keys(r.real.perRpc).length < 2) continue
      for (const [rpc, f] of Object.entries(r.real.perRpc)) {
        lines.push(
          `| ${r.scenario} | ${r.store} | ${rpc} | ${Math.round(f.callsPerSecond)} | ${f.latency.p50} | ${f.latency.p99} | ${statusText(f.statuses)} |`,
        )
      }
    }
    lines.push('')
  }
  if (report.postgres !== undefined) lines.push(...storesSection(report, report.postgres))
  if (report.h2load !== undefined) lines.push(...h2loadMarkdown(report.h2load))
  if (report.instructions !== undefined) lines.push(...instructionsMarkdown(report.instructions))
  if (report.curve.length > 0) {
    lines.push(
      '## ValidateSession latency against concurrency',
      '',
      '![latency against concurrency](latency-vs-concurrency.svg)',
      '',
      '| in flight | calls/s | ceiling calls/s | ratio | p50 ms | p99 ms | ceiling p50 ms | ceiling p99 ms |',
      '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    )
    for (const p of report.curve) {
      lines.push(
        `| ${p.concurrency} | ${Math.round(p.real.callsPerSecond)} | ${Math.round(p.ceiling.callsPerSecond)} | ` +
          `${round(p.real.callsPerSecond / p.ceiling.callsPerSecond, 2)} | ${p.real.latency.p50} | ${p.real.latency.p99} | ` +
          `${p.ceiling.latency.p50} | ${p.ceiling.latency.p99} |`,
      )
    }
    lines.push('')
  }
  if (report.argon2.length > 0) {
    lines.push(
      '## Password hashing',
      '',
      `Raw argon2id verify with the service's parameters, all cores: ` +
        report.argon2
          .map((a) => `${a.verifiesPerSecond}/s with ${a.concurrency} in flight`)
          .join(', ') +
        '.',
      '',
    )
  }
  if (report.hashCurve.length > 0) {
    const raw = Math.max(0, ...report.argon2.map((a) => a.verifiesPerSecond))
    lines.push(
      'Login(password) (8 in flight, server on all cores) against OTPAUTH_HASH_CONCURRENCY, with a ' +
        'concurrent ValidateSession stream of 200 calls/s:',
      '',
      '| hash concurrency | logins/s | × raw argon2 | login p99 ms | ValidateSession p50 ms | ValidateSession p99 ms | loop delay p99 ms | statuses |',
      '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
    )
    for (const h of report.hashCurve) {
      lines.push(
        `| ${h.hashConcurrency} | ${h.loginsPerSecond} | ${raw > 0 ? round(h.loginsPerSecond / raw, 2) : '–'} | ` +
          `${h.loginLatency.p99} | ${h.validateLatency.p50} | ${h.validateLatency.p99} | ${ms(h.eventLoopP99Ms)} | ` +
          `${statusText({ ...h.loginStatuses, ...h.validateStatuses })} |`,
      )
    }
    lines.push('')
  }
  if (report.flood !== undefined) {
    const f = report.flood
    lines.push(
      '## Memory',
      '',
      `Register flood, ${f.seconds} s of unique numbers (${f.registers} numbers, ${f.callsPerSecond}/s, ` +
        `${statusText(f.statuses)}), default OTPAUTH_CACHE_MAX: RSS ${f.rssStartMB} MB at start, ` +
        `${f.rssMidMB} MB half-way, ${f.rssEndMB} MB at the end (max ${f.rssMaxMB}; ` +
        `${f.secondHalfGrowthPercent} % over the second half, ${f.lastThirdGrowthPercent} % over the last third). ` +
        `RSS every few seconds: ${f.rssMB.map((p) => `${p.t} s ${p.mb}`).join(', ')} MB.`,
      '',
    )
  }
  if (report.coldStart !== undefined) {
    lines.push(
      '## Cold start',
      '',
      `\`node ${COLD_START_ENTRY.join('/')}\` on the embedded default with a new database, spawn to a SERVING ` +
        `health answer: median ${report.coldStart.medianMs} ms (${report.coldStart.runsMs.join(', ')}).`,
      '',
    )
  }
  lines.push('## Targets', '', '| target | measured | met |', '| --- | --- | --- |')
  for (const t of report.targets) {
    lines.push(`| ${t.target} | ${t.value} | ${t.met === undefined ? '–' : t.met ? 'yes' : 'NO'} |`)
  }
  return lines.join('\n') + '\n'
}

function figure(n: number | null, digits = 1): string {
  return n === null || !Number.isFinite(n) ? '–' : String(round(n, digits))
}

/** SQLite and PostgreSQL side by side, per scenario, with the cluster's cost and round trips. */
function storesSection(report: Report, pg: PostgresRun): string[] {
  const settings = Object.entries(pg.settings)
    .map(([k, v]) => `${k}=${v}`)
    .join(', ')
  const lines = [
    '## SQLite and PostgreSQL',
    '',
    `${pg.version}, a throwaway cluster (initdb defaults plus ${settings}: every commit is ` +
      `flushed to disk; the SQLite rows run with the default OTPAUTH_DATABASE_SYNCHRONOUS=normal, ` +
      `WAL synced at checkpoints, not at each commit) on cpu ${pg.cpus}` +
      (PIN ? `, the Node server's core, so both stores get the same single core` : '') +
      `; the server's default pool (OTPAUTH_DATABASE_POOL_MAX 10). Server startup on ` +
      `PostgreSQL (migrations included) ${pg.serverStartupMs} ms` +
      (pg.queries === undefined ? '.' : `; ${pg.queries} queries over the whole run.`),
    '',
    'Server CPU is the Node process only; PostgreSQL CPU is the cluster’s processes (postmaster ' +
      'and its children, /proc utime + stime) per call, so their sum is the cost of a call. Round ' +
      'trips are the queries the pg driver sent in the window (BEGIN and COMMIT included) per ' +
      'call; SQLite runs in the process (—). For the combined scenarios the per-call figures are ' +
      'averages over their RPCs.',
    '',
    'The CPU % column is the Node server plus PostgreSQL, in % of one core: with both on the ' +
      'server’s core (when pinned), well below 100 % means the calls wait for something other ' +
      'than CPU (commits reaching the disk, or other processes on a shared machine). ' +
      'Login(password) gives the Node server every core (argon2), so it can exceed 100 %.',
    '',
    '| scenario | store | calls/s | ratio | p99 ms | server CPU µs/call | PostgreSQL CPU µs/call | total CPU µs/call | server + PostgreSQL CPU % | round trips/call | statuses | server log (warm-up included) |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |',
  ]
  const titles = [...new Set(report.table.map((r) => r.scenario))]
  for (const title of titles) {
    for (const r of report.table.filter((row) => row.scenario === title)) {
      const p = r.real
      const total = p.serverCpuUsPerCall + (p.dbCpuUsPerCall ?? 0)
      const serverLog =
        p.serverLog === undefined
          ? '–'
          : statusText({ ...p.serverLog.nonOk, ...p.serverLog.problems }).replace(
              'all OK',
              'no errors',
            )
      lines.push(
        `| ${title} | ${r.store} | ${Math.round(p.callsPerSecond)} | ` +
          `${p.scenario === 'login-password' ? '–' : r.ratio} | ${p.latency.p99} | ` +
          `${figure(p.serverCpuUsPerCall)} | ${figure(p.dbCpuUsPerCall)} | ${figure(total)} | ` +
          `${figure(p.serverCpuPercent + (p.dbCpuPercent ?? 0))} | ` +
          `${r.store === 'sqlite' ? '—' : figure(p.dbRoundTripsPerCall, 2)} | ` +
          `${statusText(p.statuses, p.missingCodes)} | ${serverLog} |`,
      )
    }
  }
  lines.push('')
  const problems = Object.entries(pg.clusterLog)
  lines.push(
    problems.length === 0
      ? 'PostgreSQL log: no WARNING, ERROR or FATAL lines.'
      : `PostgreSQL log: ${problems.map(([k, n]) => `${n} × ${k}`).join('; ')}.`,
  )
  if (pg.error !== undefined) {
    lines.push('', `**The PostgreSQL run failed:** ${pg.error.replace(/\s*\n\s*/g, ' / ')}`)
  }
  lines.push('')
  return lines
}

function chart(curve: readonly CurvePoint[]): string {
  const pts = (f: (p: CurvePoint) => number): [number, number][] =>
    curve.map((p) => [p.concurrency, f(p)])
  return lineChart({
    title: 'ValidateSession latency against calls in flight',
    xLabel: 'calls in flight (closed loop)',
    yLabel: 'latency, ms (log scale)',
    series: [
      { name: 'OtpAuth p99', color: '#c0392b', points: pts((p) => p.real.latency.p99) },
      { name: 'OtpAuth p50', color: '#e67e22', points: pts((p) => p.real.latency.p50) },
      {
        name: 'ceiling p99',
        color: '#2c3e50',
        dashed: true,
        points: pts((p) => p.ceiling.latency.p99),
      },
      {
        name: 'ceiling p50',
        color: '#7f8c8d',
        dashed: true,
        points: pts((p) => p.ceiling.latency.p50),
      },
    ],
  })
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  options = parseOptions(process.argv.slice(2))
  const wants = (section: string): boolean =>
    options.only === undefined || options.only.has(section)
  if (wants('table') && options.stores.includes('postgres') && findBinDir() === undefined) {
    throw new Error(
      "--store postgres: PostgreSQL server binaries not found (install Debian's postgresql " +
        'package, or put initdb on PATH)',
    )
  }
  if (PIN) setAffinity(process.pid, LOAD_CPUS)
  mkdirSync(options.outDir, { recursive: true })
  mkdirSync(join(root, 'bench', 'results', 'tmp'), { recursive: true })
  tmp = mkdtempSync(join(tmpdir(), 'otpauth-bench-'))
  sink = await startSmsSink(codes)
  const report: Report = {
    date: new Date().toISOString(),
    machine: machine(),
    loadBefore: loadavg().map((l) => round(l, 2)),
    loadAfter: [],
    options: { ...options, only: options.only === undefined ? undefined : [...options.only] },
    table: [],
    curve: [],
    argon2: [],
    hashCurve: [],
    flood: undefined,
    coldStart: undefined,
    serverStartupMs: 0,
    postgres: undefined,
    h2load: undefined,
    instructions: undefined,
    targets: [],
  }
  // Ctrl-C or a kill: exit through process.exit, so the 'exit' handlers remove the cluster.
  const interrupted = (code: number) => (): void => {
    rmSync(tmp, { recursive: true, force: true })
    process.exit(code)
  }
  process.once('SIGINT', interrupted(130))
  process.once('SIGTERM', interrupted(143))
  log(`otpauth bench: ${JSON.stringify(report.machine)}, load ${report.loadBefore.join(' ')}`)
  const started = now()
  try {
    if (wants('table') || wants('curve')) {
      const ceiling = await NodeProcess.start('ceiling-server.js', {
        cpus: SERVER_CPUS,
        logFile: join(tmp, 'ceiling.log'),
      })
      try {
        await sqliteTableAndCurve(report, ceiling)
        if (wants('table') && options.stores.includes('postgres')) {
          report.postgres = await postgresTable(ceiling, report.table)
        }
      } finally {
        await ceiling.stop()
      }
    }
    if (wants('argon2') || wants('hash')) report.argon2 = await argonRates()
    if (wants('hash')) report.hashCurve = await hashCurve()
    if (wants('flood')) report.flood = await flood()
    if (
      options.only?.has('h2load') === true ||
      (wants('h2load') && h2loadVersion() !== undefined)
    ) {
      report.h2load = await h2loadSection(h2loadDeps())
    } else if (wants('h2load')) {
      log('h2load section skipped: h2load is not installed (Debian nghttp2-client)')
    }
    // Minutes under valgrind: only when named.
    if (options.only?.has('instructions') === true) {
      report.instructions = await instructionsSection(instructionsDeps())
    }
    if (wants('cold')) report.coldStart = await coldStarts()
  } finally {
    await sink.close()
    rmSync(tmp, { recursive: true, force: true })
  }
  report.loadAfter = loadavg().map((l) => round(l, 2))
  report.targets = targets(report)

  const strip = (key: string, value: unknown): unknown =>
    key === 'produced' || key === 'tokens' ? undefined : value
  writeFileSync(join(options.outDir, 'results.json'), JSON.stringify(report, strip, 2) + '\n')
  const md = markdown(report)
  writeFileSync(join(options.outDir, 'results.md'), md)
  if (report.curve.length > 0) {
    writeFileSync(join(options.outDir, 'latency-vs-concurrency.svg'), chart(report.curve))
  }
  log('')
  log(md)
  log(
    `bench took ${round((now() - started) / 1000, 1)} s; results in ` +
      `${relative(process.cwd(), options.outDir) || '.'}/`,
  )
  if (report.postgres?.error !== undefined) {
    throw new Error(`the PostgreSQL run failed: ${report.postgres.error.split('\n')[0] ?? ''}`)
  }
}

/** What the h2load section needs from the bench: its servers, setup phases and /proc readings. */
function h2loadDeps(): H2loadDeps<NodeProcess> {
  return {
    warmupSeconds: options.warmupMs / 1000,
    durationSeconds: options.h2loadMs / 1000,
    rounds: options.h2loadRounds,
    startReal: (name, extraEnv) => startReal(name, extraEnv),
    startCeiling: () =>
      NodeProcess.start('ceiling-server.js', {
        cpus: SERVER_CPUS,
        logFile: join(tmp, 'h2load-ceiling.log'),
      }),
    makeTokens: async (server, count) => {
      const users = (
        await setup({
          target: server,
          ceiling: false,
          scenario: 'register-verify',
          concurrency: Math.min(count, 8),
          freshCount: count,
        })
      ).produced
      return (
        await setup({
          target: server,
          ceiling: false,
          scenario: 'request-login',
          concurrency: Math.min(count, 8),
          pool: users,
          keepTokens: count,
        })
      ).tokens
    },
    cpuSeconds,
    freePort,
    loadCpus: PIN ? '1' : undefined,
    tmp,
    log,
  }
}

/** What the instructions section needs from the bench: the servers' scripts and environments. */
function instructionsDeps(): InstructionsDeps {
  return {
    calls: options.instrCalls,
    warmupCalls: options.instrWarmup,
    maxRounds: options.instrRounds,
    steadyPercent: 1,
    scenarios: options.scenarios,
    concurrency: options.concurrency,
    connections: options.connections,
    realEnv: (extra) => realServerEnv(extra),
    ceilingEnv: process.env,
    realScript: join(here, 'server-entry.js'),
    ceilingScript: join(here, 'ceiling-server.js'),
    serverCpus: PIN ? SERVER_CPUS : undefined,
    codes,
    tmp,
    dumpDir: join(root, 'bench', 'results', 'tmp', 'callgrind'),
    log,
  }
}

/** The table on SQLite (when asked) and the concurrency curve, with one real server. */
async function sqliteTableAndCurve(report: Report, ceiling: NodeProcess): Promise<void> {
  const wants = (section: string): boolean =>
    options.only === undefined || options.only.has(section)
  const table = wants('table') && options.stores.includes('sqlite')
  if (!table && !wants('curve')) return
  const real = await startReal('real')
  report.serverStartupMs = round(real.startupMs, 1)
  try {
    if (table) await scenarioTable('sqlite', real, ceiling, report.table)
    if (wants('curve')) {
      const users = (
        await setup({
          target: real,
          ceiling: false,
          scenario: 'register-verify',
          concurrency: 16,
          freshCount: options.quick ? 100 : 500,
        })
      ).produced
      const tokens = (
        await setup({
          target: real,
          ceiling: false,
          scenario: 'request-login',
          concurrency: 16,
          pool: users,
          keepTokens: options.quick ? 100 : 500,
        })
      ).tokens
      report.curve = await concurrencyCurve(real, ceiling, tokens)
    }
  } finally {
    await real.stop()
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(
      `bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    )
    process.exit(1)
  },
)
