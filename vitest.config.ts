import { defineConfig } from 'vitest/config'

const jsonReport = process.env['VITEST_JSON']

// The rules: every one of these files runs once per store, through the same harness.
const RULE_TESTS = [
  'test/sign-up.test.ts',
  'test/verify-otp.test.ts',
  'test/login-code.test.ts',
  'test/login-password.test.ts',
  'test/lockout.test.ts',
  'test/send-limits.test.ts',
  'test/number-cap.test.ts',
  'test/sessions.test.ts',
  'test/attack-brute-force.test.ts',
  'test/attack-enumeration.test.ts',
  'test/enumeration-oracles.test.ts',
  'test/session-management.test.ts',
  'test/change-password.test.ts',
  'test/phone-change.test.ts',
  'test/delete-account.test.ts',
  'test/resend-after-verify.test.ts',
  'test/upgrade.test.ts',
  'test/sms-budget.test.ts',
  'test/delivery-outcomes.test.ts',
  'test/sms-budgets-rpc.test.ts',
  'test/countries-and-test-numbers.test.ts',
  'test/messages.test.ts',
  'test/email-channel.test.ts',
]

export default defineConfig({
  test: {
    // One throwaway PostgreSQL server for the run (or OTPAUTH_TEST_DATABASE_URL): test/postgres/.
    globalSetup: ['test/postgres/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    allowOnly: !process.env['CI'],
    reporters: jsonReport === undefined ? ['default'] : ['default', 'json'],
    ...(jsonReport === undefined ? {} : { outputFile: { json: jsonReport } }),
    projects: [
      {
        extends: true,
        test: { name: 'sqlite', include: ['test/**/*.test.ts'], provide: { store: 'sqlite' } },
      },
      {
        extends: true,
        test: { name: 'postgres', include: RULE_TESTS, provide: { store: 'postgres' } },
      },
    ],
  },
})
