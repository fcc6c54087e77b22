import { checkHealth } from './health/check-health.js'

// The container HEALTHCHECK, bundled from this file: `node dist/bundle/health-probe.mjs [host:port]
// [service]`. Exit 0 when the service is SERVING, 1 otherwise. The default target is this container's own gRPC port.
const port = (process.env['OTPAUTH_ADDRESS'] ?? '0.0.0.0:50051').split(':').at(-1) ?? '50051'
const target = process.argv[2] ?? `127.0.0.1:${port}`
const service = process.argv[3] ?? 'otpauth.v1.OtpAuth'

checkHealth(target, service, 3_000).then(
  (status) => {
    process.stdout.write(`${target} ${service || '(server)'}: ${status}\n`)
    process.exit(status === 'SERVING' ? 0 : 1)
  },
  (error: unknown) => {
    process.stderr.write(`${target}: ${error instanceof Error ? error.message : String(error)}\n`)
    process.exit(1)
  },
)
