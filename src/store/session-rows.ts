import { sql } from 'kysely'
import type { SessionRecord } from '../auth/auth-store.js'

/** A session row as both stores read it; rows from before 0003 were authenticated at creation. */
export const SESSION_COLUMNS = [
  'sessions.id',
  'sessions.user_id',
  'users.phone',
  'sessions.created_at',
  sql<number>`coalesce(sessions.authenticated_at, sessions.created_at)`.as('authenticated_at'),
  'sessions.expires_at',
  'sessions.client_key',
] as const

/** A SessionProof cut-off every login passes: times are epoch ms, never negative. */
export const ANY_LOGIN = -1

interface SessionRow {
  id: string
  user_id: string
  phone: string
  created_at: number
  authenticated_at: number
  expires_at: number
  client_key: string
}

export function toSessionRecord(row: SessionRow): SessionRecord {
  return {
    id: row.id,
    userId: row.user_id,
    phone: row.phone,
    createdAt: row.created_at,
    authenticatedAt: row.authenticated_at,
    expiresAt: row.expires_at,
    clientKey: row.client_key,
  }
}
