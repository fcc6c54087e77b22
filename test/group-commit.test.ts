import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import SQLite from 'better-sqlite3'
import { afterEach, describe, expect, it } from 'vitest'
import { GroupCommit } from '../src/store/group-commit.js'

const dirs: string[] = []
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true })
})

function openPair(): { writer: SQLite.Database; reader: SQLite.Database } {
  const dir = mkdtempSync(join(tmpdir(), 'otpauth-commit-'))
  dirs.push(dir)
  const writer = new SQLite(join(dir, 'db.sqlite'))
  writer.pragma('journal_mode = WAL')
  writer.exec('CREATE TABLE t (v INTEGER)')
  const reader = new SQLite(join(dir, 'db.sqlite'), { readonly: true })
  return { writer, reader }
}

const count = (db: SQLite.Database): number =>
  (db.prepare('SELECT count(*) AS n FROM t').get() as { n: number }).n

describe('GroupCommit', () => {
  it('when several writes happen in one turn, then they commit together and settled waits for it', async () => {
    const { writer, reader } = openPair()
    const commits = new GroupCommit(writer)
    const insert = writer.prepare('INSERT INTO t (v) VALUES (?)')

    for (let i = 0; i < 5; i += 1) {
      commits.enter()
      insert.run(i)
    }
    // Not yet durable, so not visible to another connection.
    expect(writer.inTransaction).toBe(true)
    expect(count(reader)).toBe(0)

    await commits.settled()

    expect(writer.inTransaction).toBe(false)
    expect(count(reader)).toBe(5)
    writer.close()
    reader.close()
  })

  it('when nothing was written, then settled resolves at once', async () => {
    const { writer, reader } = openPair()
    const commits = new GroupCommit(writer)

    await expect(commits.settled()).resolves.toBeUndefined()
    writer.close()
    reader.close()
  })

  it('when a transaction of its own is open, then writes join it instead of opening a batch', () => {
    const { writer, reader } = openPair()
    const commits = new GroupCommit(writer)
    const insert = writer.prepare('INSERT INTO t (v) VALUES (?)')

    writer.transaction(() => {
      commits.enter()
      insert.run(1)
    })()

    expect(writer.inTransaction).toBe(false)
    expect(count(reader)).toBe(1)
    writer.close()
    reader.close()
  })
})
