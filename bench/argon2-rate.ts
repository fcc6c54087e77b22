import { hash, verify } from '@node-rs/argon2'
import { loadConfig } from '../src/config.js'

// Raw argon2id verify rate with the service's parameters (from the same environment variables),
// `concurrency` verifies in flight on libuv's pool: the physical limit for Login(password).
const [concurrencyArg = '2', secondsArg = '3'] = process.argv.slice(2)
const concurrency = Number(concurrencyArg)
const ms = Number(secondsArg) * 1000
const { argon2 } = loadConfig(process.env)
const stored = await hash('bench password 1', {
  memoryCost: argon2.memoryKib,
  timeCost: argon2.timeCost,
  parallelism: argon2.parallelism,
})
for (let i = 0; i < 4; i++) await verify(stored, 'bench password 1') // warm-up
let done = 0
const started = performance.now()
const endAt = started + ms
await Promise.all(
  Array.from({ length: concurrency }, async () => {
    while (performance.now() < endAt) {
      await verify(stored, 'bench password 1')
      done += 1
    }
  }),
)
const seconds = (performance.now() - started) / 1000
process.stdout.write(
  JSON.stringify({ concurrency, verifiesPerSecond: done / seconds, params: argon2 }) + '\n',
)
