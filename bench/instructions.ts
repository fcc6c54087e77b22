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
// count barely moves when other programs share the machine. The server runs under callgrind with
// instrumentation off (about 25× slower than native instead of 50–100×), is warmed up, then
// instrumentation goes on; a first stretch of calls is run instrumented but not counted, because
// the first instrumented thousands of calls still cost up to twice the steady figure (V8 is still
// compiling and collecting: measured on the ceiling, 630k then 490k instructions per call in two
// back-to-back 1,000-call rounds after a 2,000-call warm-up), and only then are N calls counted:
// counters zeroed, the calls made, a dump read. Each server is measured in its own process.

const execFileAsync = promisify(execFile)
const SERVICE = '/otpauth.v1.OtpAuth/'
// Far from the numbers the other sections use (from 0, and from 2·10^8 for the ceiling): the
// shared code table is indexed by number, and this section makes its numbers itself.
const FIRST_NUMBER = 250_000_000
const CANNED_TOKEN = 'A'.repeat(43)

export interface InstructionsDeps {
  /** Calls counted per round. */
  calls: number
  /** Calls before instrumentation goes on (not counted). */
  warmupCalls: number
  /** Calls with instrumentation on, before counting starts (not counted). */
  settleCalls: number
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

export interface InstructionScenario {
  scenario: string
  rpc: string
  real: InstructionRound[]
  ceiling: InstructionRound[]
  /** Real instructions per call over the ceiling's (first rounds), all threads. */
  ratio: number
  mainThreadRatio: number
}

export interface InstructionsResult {
  valgrind: string
  command: string
  calls: number
  warmupCalls: number
  settleCalls: number
  concurrency: number
  scenarios: InstructionScenario[]
  /** ValidateSession counted twice in a row on the real server: the second over the first. */
  repeatPercent: number
  repeatMainThreadPercent: number
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
  // Instrumentation off until callgrind_control -i on: the warm-up runs far faster.
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
  const counted = scenarios(deps.codes).map((s): InstructionScenario => {
    const r = real.get(s.name) ?? []
    const c = ceiling.get(s.name) ?? []
    const ratio = (key: 'perCall' | 'mainThreadPerCall'): number =>
      round((r[0]?.[key] ?? Number.NaN) / (c[0]?.[key] ?? Number.NaN), 2)
    return {
      scenario: s.name,
      rpc: s.rpc,
      real: r,
      ceiling: c,
      ratio: ratio('perCall'),
      mainThreadRatio: ratio('mainThreadPerCall'),
    }
  })
  const validate = real.get('validate') ?? []
  const repeat = (key: 'instructions' | 'mainThread'): number =>
    round(
      (100 * ((validate[1]?.[key] ?? Number.NaN) - (validate[0]?.[key] ?? Number.NaN))) /
        (validate[0]?.[key] ?? Number.NaN),
      2,
    )
  return {
    valgrind,
    command: `valgrind ${VALGRIND_ARGS.join(' ')} --callgrind-out-file=… node <server>`,
    calls: deps.calls,
    warmupCalls: deps.warmupCalls,
    settleCalls: deps.settleCalls,
    concurrency: deps.concurrency,
    scenarios: counted,
    repeatPercent: repeat('instructions'),
    repeatMainThreadPercent: repeat('mainThread'),
    minutes: round((performance.now() - started) / 60_000, 1),
  }
}

// ---------------------------------------------------------------------------------------------
// The scenarios: one chain of numbers, as in the table. Register leaves a sign-up code, VerifyOtp
// turns it into a verified number, RequestLoginCode leaves a login code, Login(code) spends it and
// gives the session tokens ValidateSession then uses.

interface Chain {
  ceiling: boolean
  nextFresh: number
  registered: number[]
  verified: number[]
  codeSent: number[]
  tokens: string[]
  /** Calls whose number had no code in the sink's table. */
  missingCodes: number
}

interface Call {
  message: Uint8Array
  index: number | undefined
}

interface ScenarioSpec {
  name: string
  rpc: string
  path: string
  /** Counted rounds: ValidateSession twice, to show the count repeats. */
  rounds: number
  wantMessage: boolean
  /** The next call, or undefined when its input ran out (a finding: the chain broke). */
  next: (chain: Chain, i: number) => Call | undefined
  answered: (chain: Chain, call: Call, message: Buffer | undefined) => void
}

/** The code last sent to the number (the ceiling takes any). */
function codeFor(chain: Chain, codes: Int32Array, index: number): string | undefined {
  if (chain.ceiling) return '123456'
  const code = takeCode(codes, index)
  if (code === undefined) chain.missingCodes += 1
  return code
}

function scenarios(codes: Int32Array): readonly ScenarioSpec[] {
  return [
    {
      name: 'register',
      rpc: 'Register (no password, webhook SMS)',
      path: `${SERVICE}Register`,
      rounds: 1,
      wantMessage: false,
      next: (chain) => {
        const index = chain.nextFresh++
        return { message: RegisterRequest.encode({ phoneNumber: phoneOf(index) }).finish(), index }
      },
      answered: (chain, call) => {
        if (call.index !== undefined) chain.registered.push(call.index)
      },
    },
    {
      name: 'verify',
      rpc: 'VerifyOtp',
      path: `${SERVICE}VerifyOtp`,
      rounds: 1,
      wantMessage: false,
      next: (chain) => {
        const index = chain.registered.shift()
        if (index === undefined) return undefined
        const code = codeFor(chain, codes, index)
        if (code === undefined) return undefined
        return {
          message: VerifyOtpRequest.encode({ phoneNumber: phoneOf(index), code }).finish(),
          index,
        }
      },
      answered: (chain, call) => {
        if (call.index !== undefined) chain.verified.push(call.index)
      },
    },
    {
      name: 'request-code',
      rpc: 'RequestLoginCode',
      path: `${SERVICE}RequestLoginCode`,
      rounds: 1,
      wantMessage: false,
      next: (chain) => {
        const index = chain.verified.shift()
        if (index === undefined) return undefined
        const message = RequestLoginCodeRequest.encode({
          phoneNumber: phoneOf(index),
          channel: Channel.CHANNEL_SMS,
        }).finish()
        return { message, index }
      },
      answered: (chain, call) => {
        if (call.index !== undefined) chain.codeSent.push(call.index)
      },
    },
    {
      name: 'login-code',
      rpc: 'Login(code)',
      path: `${SERVICE}Login`,
      rounds: 1,
      wantMessage: true,
      next: (chain) => {
        const index = chain.codeSent.shift()
        if (index === undefined) return undefined
        const code = codeFor(chain, codes, index)
        if (code === undefined) return undefined
        const message = LoginRequest.encode({
          phoneNumber: phoneOf(index),
          credential: { $case: 'code', value: code },
        }).finish()
        return { message, index }
      },
      answered: (chain, _call, message) => {
        if (message !== undefined && chain.tokens.length < 2000) {
          chain.tokens.push(LoginResponse.decode(message).sessionToken)
        }
      },
    },
    {
      name: 'validate',
      rpc: 'ValidateSession',
      path: `${SERVICE}ValidateSession`,
      rounds: 2,
      wantMessage: false,
      next: (chain, i) => {
        const token = chain.ceiling ? CANNED_TOKEN : chain.tokens[i % chain.tokens.length]
        if (token === undefined) return undefined
        return {
          message: ValidateSessionRequest.encode({ sessionToken: token }).finish(),
          index: undefined,
        }
      },
      answered: () => undefined,
    },
  ]
}

async function countScenarios(
  deps: InstructionsDeps,
  kind: 'real' | 'ceiling',
): Promise<Map<string, InstructionRound[]>> {
  const specs = scenarios(deps.codes)
  const server = await CallgrindServer.start(deps, kind)
  const out = new Map<string, InstructionRound[]>()
  const chain: Chain = {
    ceiling: kind === 'ceiling',
    nextFresh: FIRST_NUMBER,
    registered: [],
    verified: [],
    codeSent: [],
    tokens: [],
    missingCodes: 0,
  }
  try {
    for (const spec of specs) {
      const drive = async (count: number, what: string): Promise<number> => {
        const t0 = performance.now()
        const statuses = await driveCalls(deps, server, spec, chain, count)
        const bad = Object.entries(statuses).filter(([s]) => s !== 'OK')
        if (bad.length > 0) {
          throw new Error(
            `instructions: ${kind} ${spec.name} ${what}: ${bad.map(([s, n]) => `${s} ${n}`).join(', ')} ` +
              `of ${count} calls; see ${server.logFile}`,
          )
        }
        return (performance.now() - t0) / 1000
      }
      deps.log(
        `instructions: ${kind} ${spec.name}: ${deps.warmupCalls} warm-up calls, ` +
          `${deps.settleCalls} instrumented, then ${spec.rounds} × ${deps.calls} counted`,
      )
      await drive(deps.warmupCalls, 'warm-up')
      await server.control('--instr=on')
      await drive(deps.settleCalls, 'settling')
      const rounds: InstructionRound[] = []
      for (let r = 0; r < spec.rounds; r++) {
        await server.control('--zero')
        const seconds = await drive(deps.calls, 'counted round')
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
        rounds.push(result)
        deps.log(
          `  ${kind} ${spec.rpc}: ${result.perCall} instructions/call (main thread ` +
            `${result.mainThreadPerCall}; ${result.instructions} in ${deps.calls} calls, ` +
            `${result.threads} threads, ${result.seconds} s)`,
        )
      }
      await server.control('--instr=off')
      out.set(spec.name, rounds)
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
  const slot = async (): Promise<void> => {
    while (issued < count) {
      const i = issued++
      const call = spec.next(chain, i)
      if (call === undefined) {
        add(chain.missingCodes > 0 ? 'NO_CODE' : 'NO_INPUT')
        continue
      }
      // One number always calls from the same client address, as in the table.
      const xff =
        call.index === undefined
          ? undefined
          : `10.250.${(call.index >> 8) & 15}.${call.index & 255}`
      const connection = connections[i % connections.length]
      if (connection === undefined) throw new Error('no connection')
      const result = await connection.call(spec.path, call.message, xff, spec.wantMessage)
      const status = STATUS_NAMES[result.status] ?? String(result.status)
      add(status)
      if (result.status === 0) spec.answered(chain, call, result.message)
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
  const thousands = (n: number): string => `${String(round(n / 1000, 1))}k`
  const lines = [
    '## Instructions per call (callgrind)',
    '',
    `${result.valgrind}: \`${result.command}\`, each server in its own process. Per scenario: ` +
      `${result.warmupCalls} calls with instrumentation off (warm-up), ` +
      `${result.settleCalls} with it on but not counted (V8 still compiles and collects through ` +
      `the first instrumented thousands), then counters zeroed, ${result.calls} calls, a dump ` +
      `(ValidateSession: two counted rounds in a row). The calls are the bench's own client ` +
      `in a closed loop, ${result.concurrency} in flight, fresh numbers and codes from the ` +
      `chain Register → VerifyOtp → RequestLoginCode → Login(code) → ValidateSession as in the ` +
      `table; every call answered OK (checked: the bench stops otherwise). The counts are of ` +
      `all the server's threads (V8's compiler and GC helpers, libuv's pool) while the calls ` +
      `ran, idle moments included; the main thread (JavaScript, gRPC, SQLite) is shown apart. ` +
      `Unlike time, they hardly move when the machine is shared. Took ${result.minutes} min.`,
    '',
    '| scenario | real instructions/call | ceiling instructions/call | ratio | real main thread/call | ceiling main thread/call | main-thread ratio |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
  ]
  for (const s of result.scenarios) {
    const rounds = (list: InstructionRound[], key: 'perCall' | 'mainThreadPerCall'): string =>
      list.map((r) => thousands(r[key])).join(' / ') || '–'
    lines.push(
      `| ${s.rpc} | ${rounds(s.real, 'perCall')} | ${rounds(s.ceiling, 'perCall')} | ${s.ratio} | ` +
        `${rounds(s.real, 'mainThreadPerCall')} | ${rounds(s.ceiling, 'mainThreadPerCall')} | ` +
        `${s.mainThreadRatio} |`,
    )
  }
  lines.push(
    '',
    `Repeatability: ValidateSession on the real server, the second counted round against the ` +
      `first: ${result.repeatPercent} % (all threads), ${result.repeatMainThreadPercent} % ` +
      `(main thread). Ratios use the first round.`,
    '',
  )
  return lines
}
