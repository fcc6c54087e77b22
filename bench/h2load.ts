import { execFileSync, spawn } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { ListSessionsRequest, ValidateSessionRequest } from '../gen/otpauth/v1/otpauth.js'
import { GrpcConnection, STATUS_NAMES } from './grpc-call.js'
import { median, round } from './stats.js'

// A second, independent load generator for the RPCs whose identical request can be sent again
// and again with an OK answer: h2load (nghttp2, C), on one connection with 32 streams, pinned to
// the load core, against the real server and the ceiling in alternating rounds of the same run.
// h2load counts every HTTP 200 as a success while gRPC puts its status in the trailers, so the
// statuses are proven apart: the real server's own Prometheus counters before and after each
// round, and one call with the bench's client before and after it, on both servers.

/** A bench child the section loads: the real server or the ceiling, on the server core. */
export interface LoadedServer {
  readonly pid: number
  readonly port: number
  stop(): Promise<void>
}

export interface H2loadDeps<S extends LoadedServer> {
  warmupSeconds: number
  durationSeconds: number
  rounds: number
  /** The real server with the table's environment (SQLite default store) plus `extraEnv`. */
  startReal: (name: string, extraEnv: Record<string, string>) => Promise<S>
  startCeiling: () => Promise<S>
  /** Session tokens of verified users, made with the bench's scenario machinery. */
  makeTokens: (server: S, count: number) => Promise<string[]>
  /** utime + stime of a process (all its threads), in seconds. */
  cpuSeconds: (pid: number) => number
  freePort: () => Promise<number>
  /** Cores for h2load (taskset -c), or undefined when the bench does not pin. */
  loadCpus: string | undefined
  tmp: string
  log: (line: string) => void
}

export interface H2loadRound {
  server: 'real' | 'ceiling'
  round: number
  /** h2load's own figure: responses in the measured window over its length. */
  callsPerSecond: number
  calls: number
  meanMs: number
  p50Ms: number
  p99Ms: number
  maxMs: number
  serverCpuPercent: number
  serverCpuUsPerCall: number
  h2loadCpuPercent: number
  /** Real server: its grpc_server_handled_total for the method over the round, by status. */
  serverStatuses: Record<string, number> | undefined
  /** The bench's own client, one call before and one after the round. */
  checkCalls: string
  /** Anything that makes the round's figures doubtful (non-OK, failed requests, …). */
  findings: string[]
}

export interface H2loadScenario {
  rpc: string
  path: string
  /** Bytes of the body h2load sends: the 5-byte gRPC frame header plus the message. */
  bodyBytes: number
  note: string
  rounds: H2loadRound[]
  realCallsPerSecond: number
  ceilingCallsPerSecond: number
  ratio: number
  realCpuUsPerCall: number
  ceilingCpuUsPerCall: number
  /** Ceiling CPU per call over the real server's. */
  cpuRatio: number
}

export interface H2loadResult {
  version: string
  /** The h2load command line of one round, ports and file names aside. */
  command: string
  warmupSeconds: number
  durationSeconds: number
  rounds: number
  scenarios: H2loadScenario[]
}

interface Replay {
  rpc: string
  path: string
  message: Uint8Array
  note: string
}

const SERVICE = '/otpauth.v1.OtpAuth/'

/** h2loadVersion is `h2load --version`'s line, or undefined when h2load is not installed. */
export function h2loadVersion(): string | undefined {
  try {
    return execFileSync('h2load', ['--version'], { stdio: ['ignore', 'pipe', 'ignore'] })
      .toString()
      .trim()
  } catch {
    return undefined
  }
}

/** h2loadSection runs the replayable RPCs under h2load against a new real server and ceiling. */
export async function h2loadSection<S extends LoadedServer>(
  deps: H2loadDeps<S>,
): Promise<H2loadResult> {
  const version = h2loadVersion()
  if (version === undefined) {
    throw new Error("--only h2load needs h2load on PATH (Debian's nghttp2-client package)")
  }
  const metricsPort = await deps.freePort()
  const real = await deps.startReal('h2load-real', {
    OTPAUTH_METRICS_ADDRESS: `127.0.0.1:${metricsPort}`,
  })
  const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`
  let ceiling: S | undefined
  try {
    ceiling = await deps.startCeiling()
    deps.log('h2load: setup (a session token, made on the real server)')
    const [token] = await deps.makeTokens(real, 1)
    if (token === undefined) throw new Error('h2load: setup made no session token')
    const replays: Replay[] = [
      {
        rpc: 'ValidateSession',
        path: `${SERVICE}ValidateSession`,
        message: ValidateSessionRequest.encode({ sessionToken: token }).finish(),
        note: 'a real session token',
      },
      {
        rpc: 'ListSessions',
        path: `${SERVICE}ListSessions`,
        message: ListSessionsRequest.encode({ sessionToken: token }).finish(),
        note: 'the same token; its account has one live session',
      },
    ]
    const scenarios: H2loadScenario[] = []
    for (const replay of replays) {
      scenarios.push(await runReplay(deps, replay, real, ceiling, metricsUrl))
    }
    return {
      version,
      command: h2loadArgs(deps, 'body.bin', 'log.tsv', 'http://127.0.0.1:PORT/PATH')
        .map((arg) => (arg.includes(' ') ? `'${arg}'` : arg))
        .join(' '),
      warmupSeconds: deps.warmupSeconds,
      durationSeconds: deps.durationSeconds,
      rounds: deps.rounds,
      scenarios,
    }
  } finally {
    await ceiling?.stop()
    await real.stop()
  }
}

function h2loadArgs<S extends LoadedServer>(
  deps: H2loadDeps<S>,
  bodyFile: string,
  logFile: string,
  url: string,
): string[] {
  const ms = (seconds: number): string => `${String(Math.round(seconds * 1000))}ms`
  return [
    ...(deps.loadCpus === undefined ? [] : ['taskset', '-c', deps.loadCpus]),
    'h2load',
    '-c',
    '1',
    '-m',
    '32',
    '-t',
    '1',
    `--warm-up-time=${ms(deps.warmupSeconds)}`,
    '-D',
    ms(deps.durationSeconds),
    `--log-file=${logFile}`,
    '-H',
    'content-type: application/grpc',
    '-H',
    'te: trailers',
    '-d',
    bodyFile,
    url,
  ]
}

async function runReplay<S extends LoadedServer>(
  deps: H2loadDeps<S>,
  replay: Replay,
  real: S,
  ceiling: S,
  metricsUrl: string,
): Promise<H2loadScenario> {
  const body = Buffer.alloc(5 + replay.message.length)
  body.writeUInt32BE(replay.message.length, 1)
  body.set(replay.message, 5)
  const bodyFile = join(deps.tmp, `h2load-${replay.path.slice(SERVICE.length)}.bin`)
  writeFileSync(bodyFile, body)
  const rounds: H2loadRound[] = []
  for (let n = 1; n <= deps.rounds; n++) {
    for (const [kind, server] of [
      ['real', real],
      ['ceiling', ceiling],
    ] as const) {
      const round = await runRound(deps, replay, bodyFile, kind, n, server, metricsUrl)
      rounds.push(round)
      deps.log(`  ${describeRound(replay.rpc, round)}`)
    }
  }
  // Medians over the rounds that had responses to measure.
  const of = (kind: 'real' | 'ceiling', key: 'callsPerSecond' | 'serverCpuUsPerCall'): number =>
    median(rounds.filter((r) => r.server === kind && r.calls > 0).map((r) => r[key]))
  const scenario: H2loadScenario = {
    rpc: replay.rpc,
    path: replay.path,
    bodyBytes: body.length,
    note: replay.note,
    rounds,
    realCallsPerSecond: of('real', 'callsPerSecond'),
    ceilingCallsPerSecond: of('ceiling', 'callsPerSecond'),
    ratio: round(of('real', 'callsPerSecond') / of('ceiling', 'callsPerSecond'), 2),
    realCpuUsPerCall: of('real', 'serverCpuUsPerCall'),
    ceilingCpuUsPerCall: of('ceiling', 'serverCpuUsPerCall'),
    cpuRatio: round(of('ceiling', 'serverCpuUsPerCall') / of('real', 'serverCpuUsPerCall'), 2),
  }
  deps.log(
    `h2load ${replay.rpc}, median of ${deps.rounds}: ${scenario.realCallsPerSecond} calls/s vs ` +
      `ceiling ${scenario.ceilingCallsPerSecond} (${scenario.ratio}×), server CPU ` +
      `${scenario.realCpuUsPerCall} vs ${scenario.ceilingCpuUsPerCall} µs/call`,
  )
  return scenario
}

function describeRound(rpc: string, r: H2loadRound): string {
  return (
    `${rpc} round ${r.round} ${r.server.padEnd(7)} ${String(Math.round(r.callsPerSecond)).padStart(6)} ` +
    `calls/s, mean ${r.meanMs} p99 ${r.p99Ms} max ${r.maxMs} ms, server cpu ${r.serverCpuPercent} % ` +
    `(${r.serverCpuUsPerCall} µs/call), h2load cpu ${r.h2loadCpuPercent} %` +
    (r.serverStatuses === undefined ? '' : `, server counted ${statusList(r.serverStatuses)}`) +
    `, check calls ${r.checkCalls}` +
    (r.findings.length > 0 ? `  FINDINGS: ${r.findings.join('; ')}` : '')
  )
}

function statusList(statuses: Record<string, number>): string {
  const entries = Object.entries(statuses)
  return entries.length === 0 ? 'none' : entries.map(([s, n]) => `${s} ${n}`).join(', ')
}

async function runRound<S extends LoadedServer>(
  deps: H2loadDeps<S>,
  replay: Replay,
  bodyFile: string,
  kind: 'real' | 'ceiling',
  n: number,
  server: S,
  metricsUrl: string,
): Promise<H2loadRound> {
  const authority = `http://127.0.0.1:${server.port}`
  const findings: string[] = []
  const method = replay.path.slice(SERVICE.length)
  const before = await checkCall(authority, replay)
  const countsBefore = kind === 'real' ? await handledCounts(metricsUrl, method) : undefined
  const logFile = join(deps.tmp, `h2load-${method}-${kind}-${n}.tsv`)
  const args = h2loadArgs(deps, bodyFile, logFile, `${authority}${replay.path}`)
  const [command = 'h2load', ...rest] = args
  const child = spawn(command, rest, { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (d: Buffer) => (output += d.toString()))
  child.stderr.on('data', (d: Buffer) => (output += d.toString()))
  // CPU of the server and of h2load every 50 ms: read at the edges of h2load's measured window.
  const samples: CpuSample[] = []
  const sample = (): void => {
    samples.push({
      t: performance.timeOrigin + performance.now(),
      server: deps.cpuSeconds(server.pid),
      load: child.pid === undefined ? Number.NaN : deps.cpuSeconds(child.pid),
    })
  }
  sample()
  const sampler = setInterval(sample, 50)
  const exitCode = await new Promise<number | null>((resolve) => child.once('exit', resolve))
  clearInterval(sampler)
  const countsAfter = kind === 'real' ? await handledCounts(metricsUrl, method) : undefined
  const after = await checkCall(authority, replay)
  if (exitCode !== 0) {
    throw new Error(`h2load exited ${String(exitCode)}:\n${output.slice(-2000)}`)
  }

  const summary = parseSummary(output)
  const log = readLog(logFile)
  if (summary.failed > 0 || summary.errored > 0 || summary.timeout > 0 || summary.non2xx > 0) {
    findings.push(
      `h2load: ${summary.failed} failed, ${summary.errored} errored, ${summary.timeout} timeout, ` +
        `${summary.non2xx} not 2xx`,
    )
  }
  if (before !== 'OK' || after !== 'OK') findings.push(`check calls ${before} / ${after}`)
  let serverStatuses: Record<string, number> | undefined
  if (countsBefore !== undefined && countsAfter !== undefined) {
    serverStatuses = {}
    for (const [status, count] of Object.entries(countsAfter)) {
      const delta = count - (countsBefore[status] ?? 0)
      if (delta > 0) serverStatuses[status] = delta
    }
    // The server also counts h2load's warm-up and the two check calls: OK must cover at least the
    // measured calls, and nothing else may have moved.
    const ok = serverStatuses['OK'] ?? 0
    if (ok < log.calls) findings.push(`server counted ${ok} OK, fewer than h2load's ${log.calls}`)
    const other = Object.entries(serverStatuses).filter(([s]) => s !== 'OK')
    if (other.length > 0) findings.push(`server counted ${statusList(Object.fromEntries(other))}`)
  }
  // A round with no response in its window (the server core taken by something else for the
  // whole of it, as happens on a shared machine) has no window to read CPU over.
  if (log.calls === 0) findings.push('no response in the measured window')
  const seconds = (log.endMs - log.startMs) / 1000
  const cpu = (key: 'server' | 'load'): number =>
    log.calls === 0
      ? Number.NaN
      : interpolate(samples, log.endMs, key) - interpolate(samples, log.startMs, key)
  return {
    server: kind,
    round: n,
    callsPerSecond: summary.requestsPerSecond,
    calls: log.calls,
    meanMs: summary.meanMs,
    p50Ms: log.p50Ms,
    p99Ms: log.p99Ms,
    maxMs: summary.maxMs,
    serverCpuPercent: round((100 * cpu('server')) / seconds, 1),
    serverCpuUsPerCall: round((1e6 * cpu('server')) / log.calls, 1),
    h2loadCpuPercent: round((100 * cpu('load')) / seconds, 1),
    serverStatuses,
    checkCalls:
      before === after ? `${before} before and after` : `${before} before, ${after} after`,
    findings,
  }
}

interface CpuSample {
  t: number
  server: number
  load: number
}

/** A CPU reading at time t (ms), linear between the samples around it. */
function interpolate(samples: readonly CpuSample[], t: number, key: 'server' | 'load'): number {
  let previous = samples[0]
  if (previous === undefined) return Number.NaN
  for (const s of samples) {
    if (s.t >= t) {
      const span = s.t - previous.t
      return span <= 0
        ? s[key]
        : previous[key] + ((s[key] - previous[key]) * (t - previous.t)) / span
    }
    previous = s
  }
  return previous[key]
}

/** checkCall makes one call with the bench's own client and names its gRPC status. */
async function checkCall(authority: string, replay: Replay): Promise<string> {
  const connection = new GrpcConnection(authority)
  try {
    const result = await connection.call(replay.path, replay.message, undefined, false)
    return STATUS_NAMES[result.status] ?? String(result.status)
  } finally {
    connection.close()
  }
}

/** The server's grpc_server_handled_total for one method, by grpc_code. */
async function handledCounts(url: string, method: string): Promise<Record<string, number>> {
  const response = await fetch(url)
  if (!response.ok) throw new Error(`metrics endpoint answered ${String(response.status)}`)
  const counts: Record<string, number> = {}
  for (const line of (await response.text()).split('\n')) {
    const match = /^grpc_server_handled_total\{([^}]*)\} (\S+)$/.exec(line)
    if (match === null) continue
    const labels = new Map<string, string>()
    for (const [, name = '', value = ''] of (match[1] ?? '').matchAll(/(\w+)="([^"]*)"/g)) {
      labels.set(name, value)
    }
    if (labels.get('grpc_method') !== method) continue
    const code = labels.get('grpc_code') ?? '?'
    counts[code] = (counts[code] ?? 0) + Number(match[2])
  }
  return counts
}

interface Summary {
  requestsPerSecond: number
  failed: number
  errored: number
  timeout: number
  non2xx: number
  meanMs: number
  maxMs: number
}

/** parseSummary reads h2load's closing report. */
function parseSummary(output: string): Summary {
  const number = (pattern: RegExp): number => {
    const match = pattern.exec(output)
    if (match === null) throw new Error(`h2load output has no ${String(pattern)}:\n${output}`)
    return Number(match[1])
  }
  const durationMs = (text: string): number => {
    const match = /^([\d.]+)(us|ms|s)$/.exec(text)
    if (match === null) return Number.NaN
    const unit = { us: 0.001, ms: 1, s: 1000 }[match[2] as 'us' | 'ms' | 's']
    return round(Number(match[1]) * unit, 3)
  }
  const times = /time for request:\s+(\S+)\s+(\S+)\s+(\S+)/.exec(output)
  return {
    requestsPerSecond: round(number(/finished in [\d.]+\w*, ([\d.]+) req\/s/), 1),
    failed: number(/(\d+) failed/),
    errored: number(/(\d+) errored/),
    timeout: number(/(\d+) timeout/),
    non2xx: number(/(\d+) 3xx/) + number(/(\d+) 4xx/) + number(/(\d+) 5xx/),
    meanMs: durationMs(times?.[3] ?? ''),
    maxMs: durationMs(times?.[2] ?? ''),
  }
}

interface LogFigures {
  calls: number
  /** The measured window: first request's start to last response's end (epoch ms). */
  startMs: number
  endMs: number
  p50Ms: number
  p99Ms: number
}

/** readLog reads h2load's per-request log (start µs since the epoch, HTTP status, µs taken). */
function readLog(file: string): LogFigures {
  const latencies: number[] = []
  let start = Number.POSITIVE_INFINITY
  let end = 0
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const [startUs, , tookUs] = line.split('\t').map(Number)
    if (startUs === undefined || tookUs === undefined || !Number.isFinite(tookUs)) continue
    latencies.push(tookUs)
    start = Math.min(start, startUs)
    end = Math.max(end, startUs + tookUs)
  }
  latencies.sort((a, b) => a - b)
  const at = (q: number): number =>
    round((latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0) / 1000)
  return {
    calls: latencies.length,
    startMs: start / 1000,
    endMs: end / 1000,
    p50Ms: at(0.5),
    p99Ms: at(0.99),
  }
}

function figure(n: number): string {
  return Number.isFinite(n) ? String(n) : '–'
}

/** h2loadMarkdown is the section of results.md. */
export function h2loadMarkdown(result: H2loadResult): string[] {
  const lines = [
    '## h2load (an independent load generator)',
    '',
    `${result.version}, one connection × 32 streams (\`-c 1 -m 32 -t 1\`), pinned to the load ` +
      `core, ${result.warmupSeconds} s warm-up then ${result.durationSeconds} s measured, ` +
      `alternating real / ceiling rounds (${result.rounds} each, same run; the server and the ` +
      `ceiling on the server core as in the table). The real server is the table's (SQLite, ` +
      `webhook SMS), started for this section with its Prometheus endpoint on. Command: ` +
      `\`${result.command}\`.`,
    '',
    'h2load counts every HTTP 200 as a success, and gRPC puts its status in the trailers, so the ' +
      "statuses are proven apart: the real server's `grpc_server_handled_total` for the method, " +
      'read before and after each round, must rise by at least h2load’s count in OK and by ' +
      "nothing else (it also counts h2load's warm-up and the check calls); and one call with the " +
      "bench's own client before and after each round, on both servers, must answer OK. CPU is " +
      "the server process's (all threads, /proc) over h2load's measured window, taken from its " +
      'per-request log, as are p50 and p99; mean and max are h2load’s.',
    '',
    'Only RPCs whose identical request answers OK every time can be replayed this way: h2load ' +
      'sends the same bytes on every call. Register and RequestLoginCode send an SMS to one ' +
      'number each time, refused after the first by the resend cooldown (30 s by default; 0 in ' +
      'the bench) and after 5 by the per-number send cap (OTPAUTH_SENDS_PER_NUMBER_PER_HOUR); ' +
      'VerifyOtp and ' +
      'Login(code) spend a one-time code, so every later call with the same code fails; Logout ' +
      'is idempotent but after the first call ends nothing, a different path. Login(password) ' +
      'repeats with OK, but not 32 at a time from one client: a password try counts against ' +
      "the client lockout from the moment it starts (before the hash), and h2load's calls all " +
      'come from one address, so the server answers RESOURCE_EXHAUSTED to most of them (a quick ' +
      'run: 49 OK, 2,104 RESOURCE_EXHAUSTED in one round, the default lockout threshold being 3; ' +
      'the status check above caught it). ' +
      "Those stay with the bench's own generator (the table), which makes a fresh number or code " +
      'for every call and spreads the calls over many client addresses.',
    '',
    '| RPC | body bytes | real calls/s (median) | ceiling calls/s (median) | ratio | real CPU µs/call | ceiling CPU µs/call | CPU ratio (ceiling / real) |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ]
  for (const s of result.scenarios) {
    lines.push(
      `| ${s.rpc} | ${s.bodyBytes} | ${Math.round(s.realCallsPerSecond)} | ` +
        `${Math.round(s.ceilingCallsPerSecond)} | ${s.ratio} | ${s.realCpuUsPerCall} | ` +
        `${s.ceilingCpuUsPerCall} | ${s.cpuRatio} |`,
    )
  }
  lines.push(
    '',
    'Every round:',
    '',
    '| RPC | round | server | calls/s | mean ms | p50 ms | p99 ms | max ms | server CPU % | CPU µs/call | h2load CPU % | server-counted statuses | check calls | findings |',
    '| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |',
  )
  for (const s of result.scenarios) {
    for (const r of s.rounds) {
      lines.push(
        `| ${s.rpc} | ${r.round} | ${r.server} | ${Math.round(r.callsPerSecond)} | ${r.meanMs} | ` +
          `${r.p50Ms} | ${r.p99Ms} | ${r.maxMs} | ${figure(r.serverCpuPercent)} | ` +
          `${figure(r.serverCpuUsPerCall)} | ${figure(r.h2loadCpuPercent)} | ${r.serverStatuses === undefined ? '–' : statusList(r.serverStatuses)} | ` +
          `${r.checkCalls} | ${r.findings.length === 0 ? 'none' : r.findings.join('; ')} |`,
      )
    }
  }
  lines.push('', ...result.scenarios.map((s) => `- ${s.rpc}: ${s.note}.`), '')
  return lines
}

/** h2loadTargets are the throughput targets, read from h2load's medians. */
export function h2loadTargets(
  result: H2loadResult,
): { target: string; value: string; met: boolean | undefined }[] {
  const validate = result.scenarios.find((s) => s.rpc === 'ValidateSession')
  if (validate === undefined) return []
  return [
    {
      target: 'ValidateSession ≥ 0.85 × ceiling (h2load, median of the rounds)',
      value:
        `${validate.ratio} (${Math.round(validate.realCallsPerSecond)} vs ` +
        `${Math.round(validate.ceilingCallsPerSecond)} calls/s; CPU ${validate.realCpuUsPerCall} ` +
        `vs ${validate.ceilingCpuUsPerCall} µs/call)`,
      met: validate.ratio >= 0.85,
    },
  ]
}
