import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'
import {
  Channel,
  LoginRequest,
  LoginResponse,
  RegisterRequest,
  RequestLoginCodeRequest,
  ValidateSessionRequest,
  VerifyOtpRequest,
} from '../gen/otpauth/v1/otpauth.js'
import { STATUS_NAMES } from './grpc-call.js'
import { phoneOf, takeCode } from './phones.js'
import { RawH2Connection } from './raw-h2.js'
import { round } from './stats.js'

// Instructions per call, counted by valgrind's callgrind in the server process: unlike time, the
// count barely moves when other programs share the machine. Each server runs under callgrind in
// its own process with instrumentation off (far faster) for start-up and a warm-up; then
// instrumentation goes on and rounds of N calls are counted (counters zeroed, the calls, a dump)
// until two rounds in a row agree on the main thread. Under callgrind the first few thousand instrumented calls cost
// up to twice the steady figure whatever the uninstrumented warm-up (V8 compiles on its helper
// threads and collects more: on the ceiling, 520k, 360k, 285k, 226k, 213k, 211k instructions per
// call in six 1,000-call rounds after a 20,000-call warm-up), so a fixed settling count would be
// either too short or wasted.
//
// Node runs with V8's --predictable-gc-schedule (a fixed 4 MB young generation, fixed heap
// growing, no idle-time or memory-reducer collections): valgrind slows the server some 50×, and
// V8's time-based heap heuristics would then fire per call far more often than at native speed.
// Without it a round could jump by half after a quiet one (the same ceiling: 223k then 336k
// instructions per call on the main thread); with it the main thread's settled rounds mostly agree
// within 1 %. V8's helper threads (concurrent marking, the optimizing compiler) stay bursty: a
// 1,000-call round catches a burst or not, so the all-thread figure moves by 5-15 % between rounds.

const execFileAsync = promisify(execFile)
const SERVICE = '/otpauth.v1.OtpAuth/'
// Far from the numbers the other sections use (from 0, and from 2·10^8 for the ceiling): the
// shared code table is indexed by number, and this section makes its numbers itself.
const FIRST_NUMBER = 250_000_000
const CANNED_TOKEN = 'A'.repeat(43)
const NODE_FLAGS = ['--predictable-gc-schedule']

export interface InstructionsDeps {
  /** Calls counted per round. */
  calls: number
  /** Calls before instrumentation goes on (not counted). */
  warmupCalls: number
  /** Counted rounds at most per scenario, waiting for two in a row to agree. */
  maxRounds: number
  /** How close (in %) two rounds in a row must be, main thread, to call the count steady. */
  steadyPercent: number
  /** The scenarios to count (by name: register, verify, …), or undefined for all. */
  scenarios: ReadonlySet<string> | undefined
  concurrency: number
  connections: number
  /** The table's real server environment (a new database per call) with `extra` on top. */
  realEnv: (extra: Record<string, string>) => NodeJS.ProcessEnv
  ceilingEnv: NodeJS.ProcessEnv
  realScript: string
  ceilingScript: string
  /** Cores for the server (taskset -c), or undefined when the bench does not pin. */
  serverCpus: string | undefined
  /** The SMS sink's table of the last code sent to each number. */
  codes: Int32Array
  tmp: string
  /** Where the dumps go (emptied first), for callgrind_annotate afterwards. */
  dumpDir: string
  log: (line: string) => void
}

export interface InstructionRound {
  /** Instructions executed by the server process, all threads, while the calls ran. */
  instructions: number
  mainThread: number
  perCall: number
  mainThreadPerCall: number
  /** Threads that executed anything in the round. */
  threads: number
  /** Wall time of the round under callgrind. */
  seconds: number
  /** The round's dump files (one per thread), for callgrind_annotate. */
  dumpFiles: string
}

export interface InstructionCount {
  /** Every counted round, in order; the figures are the mean of the last two. */
  rounds: InstructionRound[]
  perCall: number
  mainThreadPerCall: number
  /** The last round against the one before, in % (all threads; main thread). */
  repeatPercent: number
  mainThreadRepeatPercent: number
  steady: boolean
}

export interface InstructionScenario {
  scenario: string
  rpc: string
  real: InstructionCount | undefined
  ceiling: InstructionCount | undefined
  /** Real instructions per call over the ceiling's, all threads. */
  ratio: number
  mainThreadRatio: number
}

export interface InstructionsResult {
  valgrind: string
  command: string
  calls: number
  warmupCalls: number
  maxRounds: number
  steadyPercent: number
  concurrency: number
  scenarios: InstructionScenario[]
  minutes: number
}

/** valgrindVersion is `valgrind --version`, or undefined when valgrind is not installed. */
export function valgrindVersion(): string | undefined {
  try {
    return execFileSync('valgrind', ['--version'], { stdio: ['ignore', 'pipe', 'ignore'] })
      .toString()
      .trim()
  } catch {
    return undefined
  }
}

const VALGRIND_ARGS = [
  '--tool=callgrind',
  // Instrumentation off until callgrind_control --instr=on: start-up and warm-up run far faster.
  '--instr-atstart=no',
  // One count per thread: the main thread (JavaScript, gRPC, SQLite) apart from V8's helpers.
  '--separate-threads=yes',
  // V8 writes and rewrites machine code on the heap: valgrind must watch for it.
  '--smc-check=all-non-file',
]

/** instructionsSection counts instructions per call for each scenario on both servers. */
export async function instructionsSection(deps: InstructionsDeps): Promise<InstructionsResult> {
  const valgrind = valgrindVersion()
  if (valgrind === undefined) {
    throw new Error("--only instructions needs valgrind on PATH (Debian's valgrind package)")
  }
  const started = performance.now()
  const real = await countScenarios(deps, 'real')
  const ceiling = await countScenarios(deps, 'ceiling')
  const wanted = SCENARIOS.filter((s) => deps.scenarios === undefined || deps.scenarios.has(s.name))
  const counted = wanted.map((s): InstructionScenario => {
    const r = real.get(s.name)
    const c = ceiling.get(s.name)
    const ratio = (key: 'perCall' | 'mainThreadPerCall'): number =>
      round((r?.[key] ?? Number.NaN) / (c?.[key] ?? Number.NaN), 2)
    return {
      scenario: s.name,
      rpc: s.rpc,
      real: r,
      ceiling: c,
      ratio: ratio('perCall'),
      mainThreadRatio: ratio('mainThreadPerCall'),
    }
  })
  return {
    valgrind,
    command:
      `valgrind ${VALGRIND_ARGS.join(' ')} --callgrind-out-file=… ` +
      `node ${NODE_FLAGS.join(' ')} <server>`,
    calls: deps.calls,
    warmupCalls: deps.warmupCalls,
    maxRounds: deps.maxRounds,
    steadyPercent: deps.steadyPercent,
    concurrency: deps.concurrency,
    scenarios: counted,
    minutes: round((performance.now() - started) / 60_000, 1),
  }
}

// ---------------------------------------------------------------------------------------------
// The scenarios: one chain of numbers, as in the table. Register leaves a sign-up code, VerifyOtp
// turns it into a verified number, RequestLoginCode leaves a login code, Login(code) spends it and
// gives the session tokens ValidateSession then uses. On the ceiling every number is fresh, every
// code is 123456 and the token is canned.

interface Chain {
  ceiling: boolean
  codes: Int32Array
  nextFresh: number
  /** What each stage left for the next: registered, verified, code sent (by stage index). */
  made: number[][]
  tokens: string[]
}

interface ScenarioSpec {
  name: string
  rpc: string
  path: string
  /** Where a call's number comes from: a fresh one, one the stage before made, or none. */
  input: 'fresh' | 'previous' | 'none'
  /**
   * The request for the number (undefined when the sink never got its code); `call` counts the
   * stage's calls, for the scenarios that take no number.
   */
  request: (chain: Chain, index: number | undefined, call: number) => Uint8Array | undefined
  /** Whether a number that answered OK becomes the next stage's input. */
  makes: boolean
  /** What the answer gives the chain (Login's session token), when it is read at all. */
  answered?: (chain: Chain, message: Buffer) => void
}

/** The code last sent to the number (the ceiling takes any). */
function codeFor(chain: Chain, index: number): string | undefined {
  return chain.ceiling ? '123456' : takeCode(chain.codes, index)
}

const SCENARIOS: readonly ScenarioSpec[] = [
  {
    name: 'register',
    rpc: 'Register (no password, webhook SMS)',
    path: `${SERVICE}Register`,
    input: 'fresh',
    makes: true,
    request: (_chain, index) =>
      RegisterRequest.encode({ phoneNumber: phoneOf(index ?? 0) }).finish(),
  },
  {
    name: 'verify',
    rpc: 'VerifyOtp',
    path: `${SERVICE}VerifyOtp`,
    input: 'previous',
    makes: true,
    request: (chain, index = 0) => {
      const code = codeFor(chain, index)
      return code === undefined
        ? undefined
        : VerifyOtpRequest.encode({ phoneNumber: phoneOf(index), code }).finish()
    },
  },
  {
    name: 'request-code',
    rpc: 'RequestLoginCode',
    path: `${SERVICE}RequestLoginCode`,
    input: 'previous',
    makes: true,
    request: (_chain, index) =>
      RequestLoginCodeRequest.encode({
        phoneNumber: phoneOf(index ?? 0),
        channel: Channel.CHANNEL_SMS,
      }).finish(),
  },
  {
    name: 'login-code',
    rpc: 'Login(code)',
    path: `${SERVICE}Login`,
    input: 'previous',
    makes: false,
    request: (chain, index = 0) => {
      const code = codeFor(chain, index)
      return code === undefined
        ? undefined
        : LoginRequest.encode({
            phoneNumber: phoneOf(index),
            credential: { $case: 'code', value: code },
          }).finish()
    },
    answered: (chain, message) => {
      if (chain.tokens.length < 2000) chain.tokens.push(LoginResponse.decode(message).sessionToken)
    },
  },
  {
    name: 'validate',
    rpc: 'ValidateSession',
    path: `${SERVICE}ValidateSession`,
    input: 'none',
    makes: false,
    request: (chain, _index, call) => {
      const token = chain.ceiling ? CANNED_TOKEN : chain.tokens[call % chain.tokens.length]
      return token === undefined
        ? undefined
        : ValidateSessionRequest.encode({ sessionToken: token }).finish()
    },
  },
]

async function countScenarios(
  deps: InstructionsDeps,
  kind: 'real' | 'ceiling',
): Promise<Map<string, InstructionCount>> {
  const server = await CallgrindServer.start(deps, kind)
  const out = new Map<string, InstructionCount>()
  const chain: Chain = {
    ceiling: kind === 'ceiling',
    codes: deps.codes,
    nextFresh: FIRST_NUMBER,
    made: SCENARIOS.map(() => []),
    tokens: [],
  }
  const drive = async (stage: number, count: number, what: string): Promise<number> => {
    const spec = SCENARIOS[stage]
    if (spec === undefined) throw new Error(`no stage ${String(stage)}`)
    const t0 = performance.now()
    const statuses = await driveCalls(deps, server, spec, stage, chain, count)
    const bad = Object.entries(statuses).filter(([s]) => s !== 'OK')
    if (bad.length > 0) {
      throw new Error(
        `instructions: ${kind} ${spec.name} ${what}: ` +
          `${bad.map(([s, n]) => `${s} ${n}`).join(', ')} of ${count} calls; see ${server.logFile}`,
      )
    }
    return (performance.now() - t0) / 1000
  }
  let instrumented = false
  const instrument = async (on: boolean): Promise<void> => {
    if (on === instrumented) return
    await server.control(on ? '--instr=on' : '--instr=off')
    instrumented = on
  }
  // Input for the next `count` calls of a stage, made just before them by the stages before it,
  // uncounted (instrumentation off), so no code waits long enough to expire.
  const ensureInput = async (stage: number, count: number): Promise<void> => {
    const spec = SCENARIOS[stage]
    if (chain.ceiling || spec?.input !== 'previous') return
    const missing = count - (chain.made[stage - 1]?.length ?? 0)
    if (missing <= 0) return
    await instrument(false)
    await ensureInput(stage - 1, missing)
    await drive(stage - 1, missing, 'input')
  }
  try {
    for (const [stage, spec] of SCENARIOS.entries()) {
      if (deps.scenarios !== undefined && !deps.scenarios.has(spec.name)) continue
      if (spec.name === 'validate' && !chain.ceiling && chain.tokens.length === 0) {
        const login = SCENARIOS.findIndex((s) => s.name === 'login-code')
        await ensureInput(login, 200)
        await instrument(false)
        await drive(login, 200, 'session tokens')
      }
      deps.log(`instructions: ${kind} ${spec.rpc}: ${deps.warmupCalls} warm-up calls`)
      await ensureInput(stage, deps.warmupCalls)
      await instrument(false)
      await drive(stage, deps.warmupCalls, 'warm-up')
      const rounds: InstructionRound[] = []
      let steady = false
      while (!steady && rounds.length < deps.maxRounds) {
        await ensureInput(stage, deps.calls)
        await instrument(true)
        await server.control('--zero')
        const seconds = await drive(stage, deps.calls, 'counted round')
        const dump = await server.dump()
        const result: InstructionRound = {
          instructions: dump.all,
          mainThread: dump.main,
          perCall: Math.round(dump.all / deps.calls),
          mainThreadPerCall: Math.round(dump.main / deps.calls),
          threads: dump.threads,
          seconds: round(seconds, 1),
          dumpFiles: dump.files,
        }
        const previous = rounds.at(-1)
        rounds.push(result)
        // The main thread settles; V8's helper threads (concurrent marking, the optimizing
        // compiler) work in bursts that a round may or may not catch, so they are not the test.
        const change =
          previous === undefined
            ? Number.NaN
            : (100 * (result.mainThreadPerCall - previous.mainThreadPerCall)) /
              previous.mainThreadPerCall
        steady = Math.abs(change) <= deps.steadyPercent
        deps.log(
          `  round ${rounds.length}: ${result.perCall} instructions/call (main thread ` +
            `${result.mainThreadPerCall}; ${result.threads} threads, ${result.seconds} s)` +
            (previous === undefined
              ? ''
              : `, main thread ${round(change, 1)} % on the round before`),
        )
      }
      await instrument(false)
      const last = rounds.at(-1)
      const before = rounds.at(-2)
      const percent = (key: 'perCall' | 'mainThreadPerCall'): number =>
        last === undefined || before === undefined
          ? Number.NaN
          : round((100 * (last[key] - before[key])) / before[key], 2)
      // The figures: the mean of the last two rounds, the pair that agreed.
      const mean = (key: 'perCall' | 'mainThreadPerCall'): number =>
        last === undefined ? Number.NaN : Math.round((last[key] + (before ?? last)[key]) / 2)
      out.set(spec.name, {
        rounds,
        perCall: mean('perCall'),
        mainThreadPerCall: mean('mainThreadPerCall'),
        repeatPercent: percent('perCall'),
        mainThreadRepeatPercent: percent('mainThreadPerCall'),
        steady,
      })
    }
  } finally {
    await server.stop()
  }
  return out
}

/**
 * driveCalls makes `count` calls in a closed loop (concurrency in flight over the bench's own
 * HTTP/2 connections) and counts their statuses. Generous timeout: valgrind is slow.
 */
async function driveCalls(
  deps: InstructionsDeps,
  server: CallgrindServer,
  spec: ScenarioSpec,
  stage: number,
  chain: Chain,
  count: number,
): Promise<Record<string, number>> {
  const authority = `http://127.0.0.1:${server.port}`
  const connections = Array.from({ length: deps.connections }, () => new RawH2Connection(authority))
  const statuses: Record<string, number> = {}
  const add = (status: string): void => {
    statuses[status] = (statuses[status] ?? 0) + 1
  }
  let issued = 0
  const previous = chain.made[stage - 1]
  const slot = async (): Promise<void> => {
    while (issued < count) {
      const i = issued++
      let index: number | undefined
      if (spec.input === 'fresh' || (spec.input === 'previous' && chain.ceiling)) {
        index = chain.nextFresh++
      } else if (spec.input === 'previous') {
        index = previous?.shift()
        if (index === undefined) {
          add('NO_INPUT')
          continue
        }
      }
      const message = spec.request(chain, index, i)
      if (message === undefined) {
        add(index === undefined ? 'NO_TOKEN' : 'NO_CODE')
        continue
      }
      // One number always calls from the same client address, as in the table.
      const xff = index === undefined ? undefined : `10.250.${(index >> 8) & 15}.${index & 255}`
      const connection = connections[i % connections.length]
      if (connection === undefined) throw new Error('no connection')
      const answered = spec.answered
      const result = await connection.call(spec.path, message, xff, answered !== undefined)
      add(STATUS_NAMES[result.status] ?? String(result.status))
      if (result.status !== 0) continue
      if (spec.makes && index !== undefined) chain.made[stage]?.push(index)
      if (answered !== undefined && result.message !== undefined) answered(chain, result.message)
    }
  }
  const limitMs = 120_000 + count * 200
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new Error(`instructions: ${spec.name}: ${count} calls took over ${limitMs / 1000} s`))
    }, limitMs)
  })
  try {
    await Promise.race([
      Promise.all(Array.from({ length: Math.min(deps.concurrency, count) }, slot)),
      timeout,
    ])
  } finally {
    clearTimeout(timer)
    for (const c of connections) c.close()
  }
  return statuses
}

// ---------------------------------------------------------------------------------------------
// A bench server under callgrind

interface Dump {
  all: number
  main: number
  threads: number
  files: string
}

class CallgrindServer {
  #dumps = 0

  private constructor(
    readonly child: ChildProcess,
    readonly port: number,
    readonly logFile: string,
    readonly outDir: string,
  ) {}

  get pid(): number {
    return this.child.pid ?? 0
  }

  static async start(deps: InstructionsDeps, kind: 'real' | 'ceiling'): Promise<CallgrindServer> {
    const outDir = join(deps.dumpDir, kind)
    rmSync(outDir, { recursive: true, force: true })
    mkdirSync(outDir, { recursive: true })
    const logFile = join(deps.tmp, `callgrind-${kind}.log`)
    const script = kind === 'real' ? deps.realScript : deps.ceilingScript
    // Codes live 10 minutes (the most the service allows): under callgrind a number can wait
    // minutes between its Register and its VerifyOtp.
    const env =
      kind === 'real' ? deps.realEnv({ OTPAUTH_CODE_TTL_SECONDS: '600' }) : deps.ceilingEnv
    const argv = [
      ...VALGRIND_ARGS,
      `--callgrind-out-file=${join(outDir, 'callgrind.out.%p')}`,
      process.execPath,
      ...NODE_FLAGS,
      script,
    ]
    const log = openSync(logFile, 'a')
    const child =
      deps.serverCpus === undefined
        ? spawn('valgrind', argv, { env, stdio: ['ignore', log, log, 'ipc'] })
        : spawn('taskset', ['-c', deps.serverCpus, 'valgrind', ...argv], {
            env,
            stdio: ['ignore', log, log, 'ipc'],
          })
    closeSync(log)
    const ready = await Promise.race([
      new Promise<{ type?: string; port?: number }>((resolve) => child.once('message', resolve)),
      new Promise<undefined>((resolve) =>
        child.once('exit', () => {
          resolve(undefined)
        }),
      ),
      sleep(300_000).then(() => undefined),
    ])
    if (ready?.type !== 'ready' || ready.port === undefined) {
      child.kill('SIGKILL')
      throw new Error(`${kind} server did not start under callgrind; see ${logFile}`)
    }
    return new CallgrindServer(child, ready.port, logFile, outDir)
  }

  async control(option: string): Promise<void> {
    await execFileAsync('callgrind_control', [option, String(this.pid)], { timeout: 120_000 })
  }

  /** dump writes the counts since the last zero (one file per thread) and sums them. */
  async dump(): Promise<Dump> {
    await this.control('--dump')
    this.#dumps += 1
    const prefix = `callgrind.out.${this.pid}.${this.#dumps}-`
    for (let tries = 0; tries < 100; tries++) {
      const files = readdirSync(this.outDir).filter((f) => f.startsWith(prefix))
      if (files.length > 0) {
        let all = 0
        let main = 0
        let threads = 0
        for (const file of files) {
          const text = readFileSync(join(this.outDir, file), 'utf8')
          const summary = /^summary: (\d+)$/m.exec(text)
          if (summary === null) throw new Error(`${file}: no summary line`)
          const count = Number(summary[1])
          all += count
          if (file.endsWith('-01')) main = count
          if (count > 0) threads += 1
        }
        return { all, main, threads, files: join(this.outDir, `${prefix}*`) }
      }
      await sleep(100)
    }
    throw new Error(`callgrind wrote no ${prefix}* in ${this.outDir}`)
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
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 60_000)
    await exited
    clearTimeout(timer)
  }
}

/** instructionsMarkdown is the section of results.md. */
export function instructionsMarkdown(result: InstructionsResult): string[] {
  const thousands = (n: number | undefined): string =>
    n === undefined || !Number.isFinite(n) ? '–' : `${String(round(n / 1000, 1))}k`
  const lines = [
    '## Instructions per call (callgrind)',
    '',
    `${result.valgrind}: \`${result.command}\`, each server in its own process, on the server ` +
      `core. Per scenario: ${result.warmupCalls} calls with instrumentation off (warm-up), then ` +
      `rounds of ${result.calls} counted calls (counters zeroed, the calls, a dump) until two ` +
      `rounds in a row agree within ${result.steadyPercent} % on the main thread (at most ` +
      `${result.maxRounds}); the figures are the mean of those last two rounds. Under callgrind the first few thousand instrumented calls ` +
      `cost up to twice the steady figure (V8 still compiling and collecting), whatever the ` +
      `warm-up. The calls are the bench's own client in a closed loop, ${result.concurrency} in ` +
      `flight, fresh numbers and codes from the chain Register → VerifyOtp → RequestLoginCode → ` +
      `Login(code) → ValidateSession as in the table; every call answered OK (checked: the bench ` +
      `stops otherwise). The counts are of all the server's threads (V8's compiler and GC ` +
      `helpers, libuv's pool) while the calls ran, idle moments included; the main thread ` +
      `(JavaScript, gRPC, SQLite) is shown apart and is the steady one: the helpers work in ` +
      `bursts (concurrent marking, the optimizing compiler) that a round catches or not, so ` +
      `the all-thread figure moves by 5-15 % between rounds. Instructions leave out the kernel: ` +
      `system calls (socket and log writes) cost CPU time the counts do not show. ` +
      `--predictable-gc-schedule fixes V8's heap sizing (a 4 MB young generation, no idle-time ` +
      `collections), which at valgrind's pace would ` +
      `otherwise follow the clock; both servers run with it. Unlike time, the counts hardly move ` +
      `when the machine is shared. Took ${result.minutes} min; dumps in ` +
      `bench/results/tmp/callgrind/ for callgrind_annotate.`,
    '',
    '| scenario | real instructions/call | ceiling instructions/call | ratio | real main thread | ceiling main thread | main-thread ratio | main thread, last round vs the one before (real; ceiling) | rounds (real; ceiling) |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |',
  ]
  const repeat = (c: InstructionCount | undefined): string =>
    c === undefined
      ? '–'
      : `${String(c.mainThreadRepeatPercent)} %${c.steady ? '' : ' (not steady)'}`
  for (const s of result.scenarios) {
    lines.push(
      `| ${s.rpc} | ${thousands(s.real?.perCall)} | ${thousands(s.ceiling?.perCall)} | ${s.ratio} | ` +
        `${thousands(s.real?.mainThreadPerCall)} | ${thousands(s.ceiling?.mainThreadPerCall)} | ` +
        `${s.mainThreadRatio} | ${repeat(s.real)}; ${repeat(s.ceiling)} | ` +
        `${String(s.real?.rounds.length ?? 0)}; ${String(s.ceiling?.rounds.length ?? 0)} |`,
    )
  }
  lines.push('', 'Every counted round, instructions per call (all threads / main thread):', '')
  for (const s of result.scenarios) {
    const list = (c: InstructionCount | undefined): string =>
      c?.rounds
        .map((r) => `${thousands(r.perCall)} / ${thousands(r.mainThreadPerCall)}`)
        .join(', ') ?? '–'
    lines.push(`- ${s.rpc}: real ${list(s.real)}; ceiling ${list(s.ceiling)}`)
  }
  lines.push('')
  return lines
}
