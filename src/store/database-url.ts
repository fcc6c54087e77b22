// Pure helpers for OTPAUTH_DATABASE, apart from src/store/postgres.ts so that reading the
// configuration does not load the PostgreSQL driver (the embedded default never needs it).

/** isPostgresUrl tells a postgres:// or postgresql:// URL from a file path. */
export function isPostgresUrl(value: string): boolean {
  return /^postgres(ql)?:\/\//i.test(value)
}

/** redactUrl is the URL with its password replaced, for logs and error messages. */
export function redactUrl(value: string): string {
  try {
    const url = new URL(value)
    if (url.password !== '') url.password = '***'
    for (const name of ['password', 'sslpassword']) {
      if (url.searchParams.has(name)) url.searchParams.set(name, '***')
    }
    return url.toString()
  } catch {
    // Not parseable: hide everything up to the last @ (a password may hold / or @).
    return value.includes('@') ? value.replace(/^([a-z][a-z0-9+.-]*:\/\/)?[^]*@/i, '$1***@') : value
  }
}
