/**
 * Throwaway PostgreSQL clusters for the tests, run with the system's server binaries (Debian's
 * `postgresql` package). Shared by the vitest globalSetup (one cluster for the whole run) and by
 * test/postgres/test-database.ts (stop/start of that cluster, private clusters for fault tests).
 *
 * Nothing here is used by the service itself.
 */
import { execFile, execFileSync } from 'node:child_process'
import { existsSync, readdirSync, realpathSync } from 'node:fs'
import { chmod, chown, mkdtemp, readFile, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, dirname, join } from 'node:path'

/** Everything needed to stop and start a cluster again, from any process (JSON-serialisable). */
export interface PostgresControl {
  readonly dataDir: string
  readonly port: number
  /** The Unix socket directory, also the cluster's root directory (data dir, log). */
  readonly socketDir: string
  /** True when the binaries run as the `postgres` user through runuser (we are root). */
  readonly runAsPostgres: boolean
  readonly binDir: string
  readonly logFile: string
}

export const NOT_FOUND_MESSAGE =
  "PostgreSQL server binaries not found: install Debian's postgresql package " +
  '(apt-get install postgresql) or set OTPAUTH_TEST_DATABASE_URL'

const DEBIAN_ROOT = '/usr/lib/postgresql'

function hasServerBinaries(dir: string): boolean {
  return ['initdb', 'pg_ctl', 'postgres'].every((name) => existsSync(join(dir, name)))
}

/**
 * The directory holding initdb, pg_ctl and postgres: the one of an `initdb` on PATH (symlinks
 * resolved), else the newest /usr/lib/postgresql/<version>/bin. Throws when there is none.
 */
export function findBinDir(): string {
  for (const dir of (process.env['PATH'] ?? '').split(delimiter)) {
    if (dir === '') continue
    const candidate = join(dir, 'initdb')
    if (!existsSync(candidate)) continue
    const real = dirname(realpathSync(candidate))
    if (hasServerBinaries(real)) return real
  }
  let versions: string[] = []
  try {
    versions = readdirSync(DEBIAN_ROOT)
  } catch {
    // No Debian PostgreSQL at all.
  }
  const newest = versions
    .filter((v) => /^\d+(\.\d+)?$/.test(v))
    .sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a))
    .map((v) => join(DEBIAN_ROOT, v, 'bin'))
    .find(hasServerBinaries)
  if (newest === undefined) throw new Error(NOT_FOUND_MESSAGE)
  return newest
}

/** uid and gid of the `postgres` user, from /etc/passwd. */
async function postgresUser(): Promise<{ uid: number; gid: number }> {
  const passwd = await readFile('/etc/passwd', 'utf8')
  for (const line of passwd.split('\n')) {
    const [name, , uid, gid] = line.split(':')
    if (name === 'postgres' && uid !== undefined && gid !== undefined) {
      return { uid: Number(uid), gid: Number(gid) }
    }
  }
  throw new Error(
    'running as root, and initdb refuses root: the `postgres` user is needed to run the test ' +
      "cluster, but it does not exist (Debian's postgresql package creates it)",
  )
}

function isRoot(): boolean {
  return process.getuid?.() === 0
}

interface RunResult {
  readonly stdout: string
  readonly stderr: string
}

/** Runs a PostgreSQL binary (as `postgres` when asked), rejecting with its output on failure. */
function runBinary(
  control: Pick<PostgresControl, 'binDir' | 'runAsPostgres' | 'socketDir'>,
  name: string,
  args: readonly string[],
): Promise<RunResult> {
  const binary = join(control.binDir, name)
  const [file, argv] = control.runAsPostgres
    ? ['runuser', ['-u', 'postgres', '--', binary, ...args]]
    : [binary, [...args]]
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      argv,
      { cwd: control.socketDir, env: { ...process.env, LC_ALL: 'C' }, timeout: 60_000 },
      (error, stdout, stderr) => {
        if (error === null) {
          resolve({ stdout, stderr })
          return
        }
        const how = error.killed
          ? 'timed out'
          : `failed (exit ${String(error.code ?? error.signal ?? '?')})`
        const output = `${stdout}${stderr}`.trim()
        reject(new Error(`${file} ${argv.join(' ')} ${how}\n${output}`, { cause: error }))
      },
    )
    child.stdin?.end()
  })
}

/** The server options, the same for every start of a cluster. */
function serverOptions(control: PostgresControl): string {
  return [
    `-p ${control.port}`,
    `-k ${control.socketDir}`,
    '-c listen_addresses=127.0.0.1',
    '-c fsync=off',
    '-c synchronous_commit=off',
    '-c full_page_writes=off',
    '-c max_connections=300',
  ].join(' ')
}

async function logTail(control: PostgresControl, lines = 30): Promise<string> {
  try {
    const log = await readFile(control.logFile, 'utf8')
    return log.trimEnd().split('\n').slice(-lines).join('\n')
  } catch {
    return '(no server log)'
  }
}

/** `pg_ctl start -w` with the cluster's options; the error carries the tail of the server log. */
export async function startCluster(control: PostgresControl): Promise<void> {
  try {
    await runBinary(control, 'pg_ctl', [
      '-D',
      control.dataDir,
      '-o',
      serverOptions(control),
      '-w',
      '-t',
      '30',
      '-l',
      control.logFile,
      'start',
    ])
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    throw new Error(
      `could not start PostgreSQL on 127.0.0.1:${control.port} (data ${control.dataDir}): ` +
        `${message}\n--- server log (tail) ---\n${await logTail(control)}`,
      { cause: error },
    )
  }
}

/** `pg_ctl stop -w` in the given shutdown mode. */
export async function stopCluster(
  control: PostgresControl,
  mode: 'smart' | 'fast' | 'immediate',
): Promise<void> {
  await runBinary(control, 'pg_ctl', ['-D', control.dataDir, '-m', mode, '-w', 'stop'])
}

/** A TCP port free on 127.0.0.1 right now (bound to port 0, then released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => {
        if (address !== null && typeof address === 'object') resolve(address.port)
        else reject(new Error('could not read the port of a listening socket'))
      })
    })
  })
}

export function serverUrl(control: Pick<PostgresControl, 'port'>): string {
  return `postgres://postgres@127.0.0.1:${control.port}/postgres`
}

export interface Cluster {
  readonly control: PostgresControl
  /** postgres://postgres@127.0.0.1:<port>/postgres (trust authentication). */
  readonly url: string
  /** Stops the server (immediate mode) and removes its directory. Idempotent. */
  readonly destroy: () => Promise<void>
  /** The same, synchronously: for process 'exit' handlers. */
  readonly destroySync: () => void
}

/**
 * initdb + start a new cluster in a fresh temporary directory. Throws (never skips) when the
 * binaries are missing or the server does not come up; cleans up after itself on failure.
 */
export async function createCluster(): Promise<Cluster> {
  const binDir = findBinDir()
  const runAsPostgres = isRoot()
  const owner = runAsPostgres ? await postgresUser() : undefined
  const root = await mkdtemp(join(tmpdir(), 'otpauth-pg-'))
  let destroyed = false
  let control: PostgresControl | undefined

  const destroySync = (): void => {
    if (destroyed) return
    destroyed = true
    if (control !== undefined) {
      const bin = join(control.binDir, 'pg_ctl')
      const args = ['-D', control.dataDir, '-m', 'immediate', '-w', 'stop']
      try {
        if (runAsPostgres) {
          execFileSync('runuser', ['-u', 'postgres', '--', bin, ...args], {
            cwd: root,
            stdio: 'ignore',
          })
        } else {
          execFileSync(bin, args, { cwd: root, stdio: 'ignore' })
        }
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
  const destroy = async (): Promise<void> => {
    if (destroyed) return
    destroyed = true
    if (control !== undefined) {
      try {
        await stopCluster(control, 'immediate')
      } catch {
        // Already stopped (a test stopped it, or it died).
      }
    }
    await rm(root, { recursive: true, force: true })
  }

  try {
    // mkdtemp makes 0700 and root-owned: the postgres user must own the cluster's directory.
    await chmod(root, 0o755)
    if (owner !== undefined) await chown(root, owner.uid, owner.gid)
    const base = { binDir, runAsPostgres, socketDir: root }
    const dataDir = join(root, 'data')
    await runBinary(base, 'initdb', [
      '-D',
      dataDir,
      '-U',
      'postgres',
      '--auth=trust',
      '-E',
      'UTF8',
      '--no-locale',
      '--no-sync',
    ])
    // The port is free when picked, but another process may take it before the server binds:
    // pick again a few times when the server says the address is in use.
    for (let attempt = 1; ; attempt++) {
      control = { ...base, dataDir, port: await freePort(), logFile: join(root, 'log') }
      try {
        await startCluster(control)
        break
      } catch (error) {
        const message = error instanceof Error ? error.message : ''
        if (attempt >= 3 || !/address already in use|could not bind/i.test(message)) throw error
      }
    }
    return { control, url: serverUrl(control), destroy, destroySync }
  } catch (error) {
    await destroy()
    throw error
  }
}
