import type SQLite from 'better-sqlite3'

/** countActiveLockouts counts clients locked out at `now` (for the metrics gauge, read at scrape). */
export function countActiveLockouts(sqlite: SQLite.Database, now: number): number {
  const row = sqlite
    .prepare<[number], { n: number }>('SELECT count(*) AS n FROM lockouts WHERE locked_until > ?')
    .get(now)
  return row?.n ?? 0
}
