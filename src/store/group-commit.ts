import type SQLite from 'better-sqlite3'

interface Batch {
  promise: Promise<void>
  resolve: () => void
  reject: (error: unknown) => void
}

/**
 * GroupCommit gathers the writes of every call handled in one event-loop turn into one SQLite
 * transaction, committed on the next setImmediate. A commit costs one WAL append whatever it holds,
 * so under load many calls share it. Durability is unchanged as long as callers answer only after
 * `settled()`: nothing is acknowledged before the commit that holds it.
 */
export class GroupCommit {
  readonly #sqlite: SQLite.Database
  #open: Batch | undefined

  constructor(sqlite: SQLite.Database) {
    this.#sqlite = sqlite
  }

  /** enter opens the batch transaction before a write, unless one (or another) is open. */
  enter(): void {
    // Already batching, or inside a transaction of its own (pruneExpired): its writes join that.
    if (this.#open !== undefined || this.#sqlite.inTransaction) return
    this.#sqlite.exec('BEGIN')
    let resolve!: () => void
    let reject!: (error: unknown) => void
    const promise = new Promise<void>((res, rej) => {
      resolve = res
      reject = rej
    })
    promise.catch(() => undefined) // a batch nobody waits for must not be an unhandled rejection
    this.#open = { promise, resolve, reject }
    setImmediate(() => {
      this.commit()
    })
  }

  /** commit ends the open batch now (also called at shutdown). */
  commit(): void {
    const batch = this.#open
    if (batch === undefined) return
    this.#open = undefined
    try {
      this.#sqlite.exec('COMMIT')
      batch.resolve()
    } catch (error) {
      if (this.#sqlite.inTransaction) this.#sqlite.exec('ROLLBACK')
      batch.reject(error)
    }
  }

  /** settled resolves once every write made so far is committed; rejects if that commit failed. */
  settled(): Promise<void> {
    return this.#open?.promise ?? Promise.resolve()
  }
}
