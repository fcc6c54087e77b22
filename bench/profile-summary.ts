import { readFileSync } from 'node:fs'
import { relative } from 'node:path'

// Summarises a V8 .cpuprofile (node --cpu-prof): self time per function, time per package, and busy
// time per layer of the service. With the window's server CPU µs per call, the layers are also
// given in µs per call (the main thread's share; GC threads and the libuv pool are not in it).
// Usage: node dist/bench/profile-summary.js <file.cpuprofile> [top] [cpu µs per call]

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  children?: number[]
}

interface Profile {
  nodes: ProfileNode[]
  samples: number[]
  timeDeltas: number[]
}

const [file, topArg = '25', usPerCallArg] = process.argv.slice(2)
if (file === undefined) {
  process.stderr.write('usage: profile-summary <file.cpuprofile> [top]\n')
  process.exit(2)
}
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile
const byId = new Map(profile.nodes.map((n) => [n.id, n]))
const self = new Map<number, number>()
profile.samples.forEach((id, i) => {
  self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0))
})
const total = [...self.values()].reduce((a, b) => a + b, 0)

const where = (url: string): string => {
  if (url === '') return ''
  const path = url.replace(/^file:\/\//, '')
  const nm = path.lastIndexOf('node_modules/')
  if (nm >= 0) return path.slice(nm + 'node_modules/'.length)
  return path.startsWith('/') ? relative(process.cwd(), path) : path
}
const packageOf = (url: string): string => {
  const w = where(url)
  if (w === '') return '(native/gc/idle)'
  if (w.startsWith('node:')) return 'node core'
  if (w.startsWith('dist/src/')) return 'otpauth src'
  if (w.startsWith('dist/gen/')) return 'generated code'
  const parts = w.split('/')
  return parts[0]?.startsWith('@') === true ? `${parts[0]}/${parts[1] ?? ''}` : (parts[0] ?? w)
}

const functions = new Map<string, number>()
const packages = new Map<string, number>()
for (const [id, time] of self) {
  const node = byId.get(id)
  if (node === undefined) continue
  const { functionName, url, lineNumber } = node.callFrame
  const key = `${functionName || '(anonymous)'}  ${where(url)}${url ? `:${lineNumber + 1}` : ''}`
  functions.set(key, (functions.get(key) ?? 0) + time)
  const pkg = packageOf(url)
  packages.set(pkg, (packages.get(pkg) ?? 0) + time)
}
const pct = (t: number): string => `${((100 * t) / total).toFixed(1).padStart(5)} %`
process.stdout.write(`${file}: ${(total / 1e6).toFixed(2)} s sampled\n\nby package:\n`)
for (const [pkg, t] of [...packages].sort((a, b) => b[1] - a[1]).slice(0, 12)) {
  process.stdout.write(`  ${pct(t)}  ${pkg}\n`)
}
process.stdout.write(`\ntop self time:\n`)
for (const [fn, t] of [...functions].sort((a, b) => b[1] - a[1]).slice(0, Number(topArg))) {
  process.stdout.write(`  ${pct(t)}  ${fn}\n`)
}

// Layers, innermost first: a sample belongs to the first frame, from the leaf up, that a rule
// names, so native work (a SQLite step, a socket write) counts for the layer that asked for it.
const LAYERS: readonly (readonly [string, (w: string) => boolean])[] = [
  ['log (pino)', (w) => /^(pino|sonic-boom|@pinojs|quick-format|fast-redact)\//.test(w)],
  ['metrics', (w) => w.startsWith('prom-client/') || w.startsWith('dist/src/metrics/')],
  ['SQLite', (w) => /^dist\/src\/store\/(sqlite|prepared-query|group-commit)/.test(w)],
  [
    'PostgreSQL driver and Kysely',
    (w) => /^(pg|pg-protocol|pg-pool|kysely)\//.test(w) || w.startsWith('dist/src/store/'),
  ],
  ['SMS sender (HTTP)', (w) => w.startsWith('dist/src/sms/') || w.startsWith('node:_http')],
  ['phone parsing', (w) => w.startsWith('libphonenumber-js/')],
  ['rules (src/auth)', (w) => w.startsWith('dist/src/auth/')],
  ['adapter and handlers (src/rpc)', (w) => w.startsWith('dist/src/rpc/')],
  ['protobuf', (w) => w.startsWith('@bufbuild/') || w.startsWith('dist/gen/')],
  ['grpc-js and HTTP/2', (w) => w.startsWith('@grpc/') || w.startsWith('node:internal/http2')],
]
const parent = new Map<number, number>()
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
const layerOf = new Map<number, string>()
const layerFor = (id: number): string => {
  const known = layerOf.get(id)
  if (known !== undefined) return known
  const node = byId.get(id)
  const name = node?.callFrame.functionName ?? ''
  let layer: string
  if (name === '(idle)') layer = '(idle)'
  else if (name === '(garbage collector)') layer = 'GC (main thread)'
  else {
    const w = where(node?.callFrame.url ?? '')
    const rule = LAYERS.find(([, test]) => test(w))
    const up = parent.get(id)
    layer = rule?.[0] ?? (up === undefined ? 'other (node core, V8)' : layerFor(up))
  }
  layerOf.set(id, layer)
  return layer
}
const layers = new Map<string, number>()
for (const [id, time] of self) {
  const layer = layerFor(id)
  layers.set(layer, (layers.get(layer) ?? 0) + time)
}
const busy = total - (layers.get('(idle)') ?? 0)
const usPerCall = usPerCallArg === undefined ? undefined : Number(usPerCallArg)
process.stdout.write(
  `\nby layer (share of the main thread's busy time${usPerCall === undefined ? '' : `; × ${usPerCall} µs/call`}):\n`,
)
for (const [layer, t] of [...layers].sort((a, b) => b[1] - a[1])) {
  if (layer === '(idle)') continue
  const share = t / busy
  const us =
    usPerCall === undefined ? '' : `  ${(share * usPerCall).toFixed(1).padStart(6)} µs/call`
  process.stdout.write(`  ${(100 * share).toFixed(1).padStart(5)} %${us}  ${layer}\n`)
}
