import { readFileSync } from 'node:fs'
import { relative } from 'node:path'

// Summarises a V8 .cpuprofile (node --cpu-prof): self time per function, and time per package.
// Usage: node dist/bench/profile-summary.js <file.cpuprofile> [top]

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

const [file, topArg = '25'] = process.argv.slice(2)
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
