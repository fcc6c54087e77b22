/**
 * A throwaway PostgreSQL cluster for the bench, run with the system's server binaries (as the
 * `postgres` user when we are root). The logic is the minimum of test/postgres/cluster.ts, copied
 * rather than imported (bench/ builds on its own, and the tests' cluster trades durability for
 * speed): here commits are real, fsync, synchronous_commit and full_page_writes stay on.
 */
import { execFile, execFileSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync, realpathSync } from 'node:fs'
import { chmod, chown, mkdtemp, readFile, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, dirname, join } from 'node:path'
import pg from 'pg'

/** The settings the bench cluster runs with, beyond initdb's defaults (reported with the results). */
export const CLUSTER_SETTINGS: Readonly<Record<string, string>> = {
  fsync: 'on',
  synchronous_commit: 'on',
  full_page_writes: 'on',
  max_connections: '100',
  listen_addresses: '127.0.0.1',
}

export interface BenchCluster {
  /** PostgreSQL's version, as `postgres --version` prints it. */
  readonly version: string
  readonly port: number
  readonly dataDir: string
  readonly logFile: string
  /** The postmaster's pid, from the data directory's postmaster.pid. */
  readonly postmasterPid: number
  /** postgres://postgres@127.0.0.1:<port>/<database> (trust authentication). */
  url(database: string): string
  createDatabase(name: string): Promise<string>
  /**
   * CPU seconds of this cluster's server processes: the postmaster's own and reaped children's
   * (utime + stime + cutime + cstime), plus utime + stime of its live children (ppid = postmaster).
   */
  cpuSeconds(clockTicks: number): number
  /** The server log's lines at WARNING and above (ERROR, FATAL, PANIC), counted by their text. */
  logProblems(): Record<string, number>
  /** Stops the server (immediate) and removes its directory. Idempotent. */
  destroy(): Promise<void>
}

const DEBIAN_ROOT = '/usr/lib/postgresql'

function hasServerBinaries(dir: string): boolean {
  return ['initdb', 'pg_ctl', 'postgres'].every((name) => existsSync(join(dir, name)))
}

/** The directory of initdb, pg_ctl and postgres: from PATH, else the newest Debian one. */
export function findBinDir(): string | undefined {
  for (const dir of (process.env['PATH'] ?? '').split(delimiter)) {
    if (dir === '' || !existsSync(join(dir, 'initdb'))) continue
    const real = dirname(realpathSync(join(dir, 'initdb')))
    if (hasServerBinaries(real)) return real
  }
  let versions: string[] = []
  try {
    versions = readdirSync(DEBIAN_ROOT)
  } catch {
    // No Debian PostgreSQL at all.
  }
  return versions
    .filter((v) => /^\d+(\.\d+)?$/.test(v))
    .sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a))
    .map((v) => join(DEBIAN_ROOT, v, 'bin'))
    .find(hasServerBinaries)
}

async function postgresUser(): Promise<{ uid: number; gid: number }> {
  const passwd = await readFile('/etc/passwd', 'utf8')
  for (const line of passwd.split('\n')) {
    const [name, , uid, gid] = line.split(':')
    if (name === 'postgres' && uid !== undefined && gid !== undefined) {
      return { uid: Number(uid), gid: Number(gid) }
    }
  }
  throw new Error('running as root, and initdb refuses root: the `postgres` user is needed')
}

interface Runner {
  binDir: string
  asPostgres: boolean
  cwd: string
  /** taskset CPU list for the binaries (and so for the postmaster and its children), if any. */
  cpus: string | undefined
}

function command(runner: Runner, name: string, args: readonly string[]): [string, string[]] {
  let argv = [join(runner.binDir, name), ...args]
  if (runner.asPostgres) argv = ['runuser', '-u', 'postgres', '--', ...argv]
  if (runner.cpus !== undefined) argv = ['taskset', '-c', runner.cpus, ...argv]
  const [file = '', ...rest] = argv
  return [file, rest]
}

function run(runner: Runner, name: string, args: readonly string[]): Promise<string> {
  const [file, argv] = command(runner, name, args)
  return new Promise((resolve, reject) => {
    execFile(
      file,
      argv,
      { cwd: runner.cwd, env: { ...process.env, LC_ALL: 'C' }, timeout: 60_000 },
      (error, stdout, stderr) => {
        if (error === null) resolve(stdout)
        else reject(new Error(`${file} ${argv.join(' ')} failed\n${stdout}${stderr}`.trim()))
      },
    )
  })
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => {
        if (address !== null && typeof address === 'object') resolve(address.port)
        else reject(new Error('no port'))
      })
    })
  })
}

/** stat fields after the command name: [0] state, [1] ppid, [11] utime … [14] cstime. */
function statFields(pid: string | number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${String(pid)}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  } catch {
    return undefined // gone meanwhile
  }
}

/**
 * initdb + start a cluster in a new temporary directory (on the same filesystem as the SQLite
 * runs' database), its processes on the given CPUs. Throws when the binaries are missing or the
 * server does not come up, after removing what it made. The cluster is also removed if the
 * process exits without destroy (an 'exit' handler, synchronous).
 */
export async function startCluster(cpus: string | undefined): Promise<BenchCluster> {
  const binDir = findBinDir()
  if (binDir === undefined) {
    throw new Error(
      "--store postgres: PostgreSQL server binaries not found (install Debian's postgresql " +
        'package, or put initdb on PATH)',
    )
  }
  const asPostgres = process.getuid?.() === 0
  const owner = asPostgres ? await postgresUser() : undefined
  const root = await mkdtemp(join(tmpdir(), 'otpauth-bench-pg-'))
  const dataDir = join(root, 'data')
  const logFile = join(root, 'log')
  const runner: Runner = { binDir, asPostgres, cwd: root, cpus }
  let started = false
  let destroyed = false

  const stopArgs = ['-D', dataDir, '-m', 'immediate', '-w', 'stop']
  const destroySync = (): void => {
    if (destroyed) return
    destroyed = true
    if (started) {
      const [file, argv] = command({ ...runner, cpus: undefined }, 'pg_ctl', stopArgs)
      try {
        execFileSync(file, argv, { cwd: root, stdio: 'ignore' })
      } catch {
        // Already stopped.
      }
    }
    try {
      execFileSync('rm', ['-rf', root], { stdio: 'ignore' })
    } catch {
      // Best effort.
    }
  }
  process.on('exit', destroySync)
  const destroy = async (): Promise<void> => {
    if (destroyed) return
    destroyed = true
    process.off('exit', destroySync)
    if (started) {
      try {
        await run({ ...runner, cpus: undefined }, 'pg_ctl', stopArgs)
      } catch {
        // Already stopped.
      }
    }
    await rm(root, { recursive: true, force: true })
  }

  try {
    await chmod(root, 0o755)
    if (owner !== undefined) await chown(root, owner.uid, owner.gid)
    const version = (await run(runner, 'postgres', ['--version'])).trim()
    await run(runner, 'initdb', [
      '-D',
      dataDir,
      '-U',
      'postgres',
      '--auth=trust',
      '-E',
      'UTF8',
      '--no-locale',
      '--no-sync', // the template's files; the bench's own commits are durable
    ])
    let port = 0
    for (let attempt = 1; ; attempt++) {
      port = await freePort()
      const settings = Object.entries(CLUSTER_SETTINGS).map(([k, v]) => `-c ${k}=${v}`)
      try {
        started = true
        await run(runner, 'pg_ctl', [
          '-D',
          dataDir,
          '-o',
          [`-p ${port}`, `-k ${root}`, ...settings].join(' '),
          '-w',
          '-t',
          '30',
          '-l',
          logFile,
          'start',
        ])
        break
      } catch (error) {
        const log = readLog(logFile)
        if (attempt >= 3 || !/address already in use|could not bind/i.test(log)) {
          throw new Error(
            `${error instanceof Error ? error.message : String(error)}\n--- server log ---\n` +
              log.split('\n').slice(-20).join('\n'),
            { cause: error },
          )
        }
      }
    }
    const postmasterPid = Number(
      readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0],
    )
    if (!Number.isInteger(postmasterPid) || postmasterPid <= 0) {
      throw new Error(`no postmaster pid in ${join(dataDir, 'postmaster.pid')}`)
    }
    const url = (database: string): string => `postgres://postgres@127.0.0.1:${port}/${database}`
    return {
      version,
      port,
      dataDir,
      logFile,
      postmasterPid,
      url,
      createDatabase: async (name) => {
        const client = new pg.Client({ connectionString: url('postgres') })
        await client.connect()
        try {
          await client.query(`CREATE DATABASE ${name}`)
        } finally {
          await client.end()
        }
        return url(name)
      },
      cpuSeconds: (clockTicks) => {
        const own = statFields(postmasterPid)
        if (own === undefined) return Number.NaN
        let ticks = [11, 12, 13, 14].reduce((sum, i) => sum + Number(own[i]), 0)
        const parent = String(postmasterPid)
        for (const entry of readdirSync('/proc')) {
          if (!/^\d+$/.test(entry)) continue
          const fields = statFields(entry)
          if (fields?.[1] === parent) ticks += Number(fields[11]) + Number(fields[12])
        }
        return ticks / clockTicks
      },
      logProblems: () => {
        const counts: Record<string, number> = {}
        for (const line of readLog(logFile).split('\n')) {
          const match = /\b(WARNING|ERROR|FATAL|PANIC):\s+(.*)$/.exec(line)
          if (match === null) continue
          const key = `${match[1] ?? ''}: ${(match[2] ?? '').replace(/\d+/g, 'N').slice(0, 120)}`
          counts[key] = (counts[key] ?? 0) + 1
        }
        return counts
      },
      destroy,
    }
  } catch (error) {
    await destroy()
    throw error
  }
}

function readLog(file: string): string {
  try {
    return readFileSync(file, 'utf8')
  } catch {
    return ''
  }
}
