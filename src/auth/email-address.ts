import { invalidField } from './auth-error.js'

// RFC 5321: a path is at most 256 octets with its angle brackets, so an address at most 254.
const MAX_ADDRESS = 254
const MAX_LOCAL = 64
// RFC 5322 dot-atom in ASCII: no quoting, no leading, trailing or double dots, no control or
// invisible characters (an internationalised mailbox needs SMTPUTF8, which not every relay has).
const ATEXT = "[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
const ADDRESS = new RegExp(
  `^(${ATEXT}(?:\\.${ATEXT})*)@((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63})$`,
  'i',
)

/**
 * parseEmail checks an address a code is to be sent to: one plain mailbox (no display name,
 * quoting or comments, so nothing can smuggle a second recipient or a header), the domain
 * lower-cased. Throws INVALID_EMAIL.
 */
export function parseEmail(raw: string): string {
  const address = raw.trim()
  const match = address.length <= MAX_ADDRESS ? ADDRESS.exec(address) : null
  const local = match?.[1]
  const domain = match?.[2]
  if (local === undefined || domain === undefined || local.length > MAX_LOCAL) {
    throw invalidField(
      'INVALID_EMAIL',
      'email',
      'email must be one address such as ana@example.com',
    )
  }
  return `${local}@${domain.toLowerCase()}`
}

/**
 * mailboxKey names an address for limits and comparisons. Local parts are case-sensitive in
 * theory and never in practice: "Ana@" and "ana@" reach one mailbox, so they share its limits.
 */
export function mailboxKey(address: string): string {
  return address.toLowerCase()
}
