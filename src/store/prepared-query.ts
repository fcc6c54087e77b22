import type SQLite from 'better-sqlite3'
import type { Compilable } from 'kysely'

const PARAM = Symbol('param')

interface Placeholder {
  readonly [PARAM]: string
}

/**
 * param stands for a named value in a query built once with Kysely and run many times as a
 * prepared statement. It is typed as the column's type so the builder still checks the query.
 */
// eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters -- T is the column type the builder expects
export function param<T = never>(name: string): T {
  const placeholder: Placeholder = { [PARAM]: name }
  return placeholder as unknown as T
}

export interface PreparedQuery<Row> {
  get(args?: Readonly<Record<string, unknown>>): Row | undefined
  all(args?: Readonly<Record<string, unknown>>): Row[]
  run(args?: Readonly<Record<string, unknown>>): SQLite.RunResult
}

/**
 * prepare compiles a Kysely query once and returns a better-sqlite3 statement that runs it
 * synchronously: the type-checked SQL of Kysely without its per-call compile and promise costs.
 */
export function prepare<Row>(
  sqlite: SQLite.Database,
  query: Compilable<Row>,
  beforeWrite?: () => void,
): PreparedQuery<Row> {
  const compiled = query.compile()
  const slots = compiled.parameters.map((p) =>
    typeof p === 'object' && p !== null && PARAM in p
      ? { name: (p as Placeholder)[PARAM] }
      : { value: p },
  )
  const statement = sqlite.prepare(compiled.sql)
  const bind = (args: Readonly<Record<string, unknown>> = {}): unknown[] =>
    slots.map((slot) => {
      if ('value' in slot) return slot.value
      if (!(slot.name in args)) throw new Error(`missing query parameter ${slot.name}`)
      return args[slot.name]
    })
  const reader = statement.reader
  const write = beforeWrite !== undefined && !statement.readonly ? beforeWrite : undefined
  return {
    get: (args) => {
      write?.()
      return reader ? (statement.get(...bind(args)) as Row | undefined) : undefined
    },
    all: (args) => {
      write?.()
      return reader ? (statement.all(...bind(args)) as Row[]) : []
    },
    run: (args) => {
      write?.()
      return statement.run(...bind(args))
    },
  }
}
