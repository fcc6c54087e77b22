import { resolve } from 'node:path'
import { defineConfig } from 'vitest/config'
import base from '../vitest.config.js'

/**
 * The heavy suites (`npm run test:heavy`): child-process crash loops that take tens of seconds,
 * kept out of `npm test` so the everyday run stays quick. CI runs both.
 */
// The heavy suites run once, on the embedded store (they crash SQLite processes on purpose).
// eslint-disable-next-line @typescript-eslint/no-unused-vars
const { projects, ...shared } = base.test ?? {}

export default defineConfig({
  ...base,
  root: resolve(import.meta.dirname, '..'),
  test: {
    ...shared,
    include: ['test/**/*.heavy.ts'],
    provide: { store: 'sqlite' },
    testTimeout: 180_000,
  },
})
