import { sql, type Kysely } from 'kysely'
import {
  budgetRefusal,
  budgetWindows,
  checkLimits,
  DAY_MS,
  HOUR_MS,
  type BudgetCharge,
  type BudgetWindow,
  type SmsBudget,
  type SmsBudgetLimits,
} from '../auth/sms-budget.js'
import type { Database } from './database.js'
import { guarded } from './store-errors.js'

/** PostgreSQL only (migration 0004): SMS charged per budget and window. */
export interface SmsBudgetsTable {
  /** 'global', 'country:<region>' or 'prefix:<+digits>' (budgetWindows). */
  scope: string
  /** Epoch ms: the UTC hour (prefixes) or UTC day (country, global) the count is for. */
  window_start: number
  count: number
}

/**
 * releaseSmsBudgets gives back one SMS to each window (a charge whose send did not happen). One
 * transaction, rows in the charge's order: a single multi-row UPDATE would lock them in scan
 * order and could deadlock with a charge in flight. READ COMMITTED is set whatever the server's
 * default: the charge's argument rests on it.
 */
export async function releaseSmsBudgets(
  db: Kysely<Database>,
  windows: readonly BudgetWindow[],
): Promise<void> {
  const budgets = db.withTables<{ sms_budgets: SmsBudgetsTable }>()
  await budgets
    .transaction()
    .setIsolationLevel('read committed')
    .execute(async (trx) => {
      for (const w of windows) {
        await trx
          .updateTable('sms_budgets')
          .set({ count: sql`count - 1` })
          .where('scope', '=', w.scope)
          .where('window_start', '=', w.start)
          .where('count', '>', 0)
          .execute()
      }
    })
}

/** windowArguments are the windows as the SQL functions take them: scopes, starts, limits. */
export function windowArguments(windows: readonly BudgetWindow[]) {
  return sql`${windows.map((w) => w.scope)}::text[], ${windows.map((w) => w.start)}::bigint[],
    ${windows.map((w) => w.limit)}::integer[]`
}

/**
 * throwIfRefused throws SMS_BUDGET_EXHAUSTED for the windows at the 1-based positions a charge
 * function refused (none: nothing is thrown).
 */
export function throwIfRefused(
  windows: readonly BudgetWindow[],
  positions: readonly number[] | null | undefined,
  now: number,
): void {
  const refused = windows.filter((_w, i) => positions?.includes(i + 1) === true)
  if (refused.length > 0) throw budgetRefusal(refused, now)
}

/** The PostgreSQL SmsBudget, with the pruning of ended windows for the prune round. */
export interface PostgresSmsBudget extends SmsBudget {
  /**
   * prune deletes the counters of windows that ended by `now` and returns how many. Safe when
   * several replicas run it at once.
   */
  prune(now: number): Promise<number>
}

/**
 * createPostgresSmsBudget keeps the SMS budgets in the sms_budgets table, one row per budget and
 * window, shared by every replica.
 *
 * Why a charge is atomic: it is one call of otpauth_charge_sms_budgets (migration 0007), which
 * runs three upserts, each `INSERT … ON CONFLICT DO UPDATE SET count = count + 1 WHERE count <
 * limit`, in READ COMMITTED (the pool pins it). PostgreSQL runs an upsert on the latest committed
 * version of the row and locks that row whether or not its WHERE holds (a concurrent first
 * insert of the same key waits for the other statement, then takes the update path), and the
 * lock is held until the statement commits. So while a charge holds a row, no other charge can
 * read or change that row's count. If any of the three upserts returns no row, its budget is
 * full and the function takes the other increments back while it still holds their rows, so
 * they never become visible: all three are charged or none, and no count ever passes its limit.
 * Rows are always locked in the same order (prefix, country, global: budgetWindows), so charges
 * cannot deadlock; the global row, which every charge takes, is locked last and held the
 * shortest. Lock waits past the pool's lock_timeout and outages become STORE_UNAVAILABLE: the
 * SMS is not sent (fail closed).
 *
 * Windows are computed from the caller's `now`, like the send limits: replicas whose clocks
 * differ move a window's edge by that much, never its size.
 */
export function createPostgresSmsBudget(
  db: Kysely<Database>,
  limits: SmsBudgetLimits,
  onUnavailable: (cause: unknown) => void,
): PostgresSmsBudget {
  checkLimits(limits)
  const run = guarded(onUnavailable)
  const budgets = db.withTables<{ sms_budgets: SmsBudgetsTable }>()
  const release = (windows: readonly BudgetWindow[]) => releaseSmsBudgets(db, windows)

  return {
    charge: (keys, now) =>
      run(async (): Promise<BudgetCharge> => {
        const windows = budgetWindows(keys, now, limits)
        // One round trip: otpauth_charge_sms_budgets (migration 0007) runs the three upserts
        // below in the same order and, if one refuses, takes the others back before its rows
        // are unlocked.
        const { rows } = await sql<{ refused: number[] }>`select otpauth_charge_sms_budgets(
          ${windowArguments(windows)}
        ) as refused`.execute(budgets)
        throwIfRefused(windows, rows[0]?.refused, now)
        let released = false
        return {
          release: () => {
            if (released) return Promise.resolve()
            released = true
            return run(() => release(windows))
          },
        }
      }),

    prune: (now) =>
      run(async () => {
        const hour = now - (now % HOUR_MS)
        const day = now - (now % DAY_MS)
        const result = await budgets
          .deleteFrom('sms_budgets')
          .where((eb) =>
            eb.or([
              eb('window_start', '<', day),
              eb.and([
                eb(sql<string>`left(scope, 7)`, '=', 'prefix:'),
                eb('window_start', '<', hour),
              ]),
            ]),
          )
          .executeTakeFirst()
        return Number(result.numDeletedRows)
      }),
  }
}
