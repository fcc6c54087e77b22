import { defineConfig } from 'vitest/config'

const jsonReport = process.env['VITEST_JSON']

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // One throwaway PostgreSQL server for the run (or OTPAUTH_TEST_DATABASE_URL): test/postgres/.
    globalSetup: ['test/postgres/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    allowOnly: !process.env['CI'],
    reporters: jsonReport === undefined ? ['default'] : ['default', 'json'],
    ...(jsonReport === undefined ? {} : { outputFile: { json: jsonReport } }),
  },
})
