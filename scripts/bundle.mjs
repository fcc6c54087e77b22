// Bundles the service into dist/bundle/, or the directory given as the first argument: what
// `npm start` and the image run. One module graph in a few files instead of hundreds to resolve
// and read at start-up. Run by `npm run build`.
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { basename, dirname, join, relative, resolve } from 'node:path'
import process from 'node:process'
import { fileURLToPath, URL } from 'node:url'
import { build } from 'esbuild'

const root = fileURLToPath(new URL('..', import.meta.url))
const outdir = resolve(process.argv[2] ?? join(root, 'dist', 'bundle'))

// Native addons load their .node files from node_modules; pg and nodemailer are imported only by
// modules the service loads on demand (PostgreSQL, SMTP), so they stay out of the start-up path.
const external = ['better-sqlite3', '@node-rs/argon2', 'pg', 'nodemailer']

/**
 * A path from the bundle's directory, as a relative URL reference.
 * @param {string} path
 */
function fromBundle(path) {
  const reference = relative(outdir, path)
  return reference.startsWith('.') ? reference : `./${reference}`
}

const ASSET_URL = /new URL\('([^']+)', import\.meta\.url\)/g

/**
 * Keeps file-relative paths working once modules share one output file: a dependency's
 * __dirname and __filename name its own directory in node_modules (grpc-health-check and
 * @grpc/reflection read their .proto files from there), and a file that our sources locate with
 * new URL('…', import.meta.url) is copied next to the bundle.
 */
/** @type {import('esbuild').Plugin} */
const fileRelativePaths = {
  name: 'file-relative-paths',
  setup(bundle) {
    bundle.onLoad({ filter: /[\\/]node_modules[\\/].*\.c?js$/ }, (args) => {
      const text = readFileSync(args.path, 'utf8')
      if (!/\b__(dirname|filename)\b/.test(text)) return undefined
      const dir = JSON.stringify(fromBundle(dirname(args.path)))
      const file = JSON.stringify(fromBundle(args.path))
      return {
        contents: `var __dirname = bundlePath(${dir}), __filename = bundlePath(${file});\n${text}`,
        loader: 'js',
      }
    })
    bundle.onLoad({ filter: /\.ts$/ }, (args) => {
      const text = readFileSync(args.path, 'utf8')
      if (args.path.includes('node_modules') || !text.includes('import.meta')) return undefined
      const contents = text.replace(ASSET_URL, (_, /** @type {string} */ reference) => {
        const asset = resolve(dirname(args.path), reference)
        if (!existsSync(asset)) throw new Error(`${args.path}: ${reference} does not exist`)
        copyFileSync(asset, join(outdir, basename(asset)))
        return `new URL(${JSON.stringify(`./${basename(asset)}`)}, import.meta.url)`
      })
      // Any other use would name the bundle's file, not this one: say so rather than ship it.
      if (text.match(/import\.meta/g)?.length !== text.match(ASSET_URL)?.length) {
        throw new Error(`${args.path}: import.meta other than new URL('…', import.meta.url)`)
      }
      return { contents, loader: 'ts' }
    })
  },
}

// Chunk names carry hashes, so a rebuild starts empty; a directory holding anything else is not ours.
if (existsSync(outdir)) {
  const foreign = readdirSync(outdir).filter((name) => !/\.(mjs|mjs\.map|binpb)$/.test(name))
  if (foreign.length > 0)
    throw new Error(`${outdir} holds more than a bundle: ${foreign.join(', ')}`)
  rmSync(outdir, { recursive: true })
}
mkdirSync(outdir, { recursive: true })
await build({
  entryPoints: {
    otpauth: join(root, 'src/main.ts'),
    'health-probe': join(root, 'src/health-probe.ts'),
  },
  outdir,
  outExtension: { '.js': '.mjs' },
  bundle: true,
  // Modules loaded with import() become chunks of their own, read only when configured.
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external,
  // Bundled CommonJS calls require() for Node's built-ins; bundlePath serves fileRelativePaths.
  banner: {
    js: [
      "import { createRequire as bundleRequire } from 'node:module'",
      "import { fileURLToPath as bundleFileURLToPath } from 'node:url'",
      'const require = bundleRequire(import.meta.url)',
      'const bundlePath = (reference) => bundleFileURLToPath(new URL(reference, import.meta.url))',
    ].join('\n'),
  },
  plugins: [fileRelativePaths],
  sourcemap: true,
  logLevel: 'warning',
})
