import js from '@eslint/js'
import tseslint from 'typescript-eslint'

export default tseslint.config(
  { ignores: ['gen/', 'dist/', 'node_modules/', 'third_party/'] },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/switch-exhaustiveness-check': 'error',
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true }],
    },
  },
  {
    // The rules of the domain import no transport, no SQL and no generated code.
    files: ['src/auth/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['@grpc/*', 'kysely', 'better-sqlite3', '**/gen/**'],
              message: 'src/auth holds the rules only: no gRPC, SQL or generated code.',
            },
            {
              group: ['../rpc/*', '../store/*', '../sms/*'],
              message: 'Imports point one way: rpc → auth ← store.',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['eslint.config.js'],
    ...tseslint.configs.disableTypeChecked,
  },
)
