import { resolve } from 'node:path'
import { defineConfig } from 'vitest/config'
import base from '../vitest.config.js'

/**
 * The heavy suites (`npm run test:heavy`): child-process crash loops that take tens of seconds,
 * kept out of `npm test` so the everyday run stays quick. CI runs both.
 */
export default defineConfig({
  ...base,
  root: resolve(import.meta.dirname, '..'),
  test: {
    ...base.test,
    projects: undefined,
    include: ['test/**/*.heavy.ts'],
    provide: { store: 'sqlite' },
    testTimeout: 180_000,
  },
})
