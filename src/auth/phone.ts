import { parsePhoneNumberFromString, type CountryCode } from 'libphonenumber-js/max'
import { LRUCache } from 'lru-cache'
import { invalidField } from './auth-error.js'

// Longer than any real number in any notation; bounds the work done on hostile input.
const MAX_RAW_LENGTH = 64

/**
 * parsePhone normalises a number to E.164 with full libphonenumber metadata, so numbers that
 * cannot exist (unassigned ranges, wrong lengths) are refused. Throws INVALID_PHONE_NUMBER.
 */
export function parsePhone(
  raw: string,
  defaultRegion: CountryCode | undefined,
  field = 'phone_number',
): string {
  if (raw.trim() === '') {
    throw invalidField('INVALID_PHONE_NUMBER', field, `${field} is required`)
  }
  if (raw.length > MAX_RAW_LENGTH) {
    throw invalidField(
      'INVALID_PHONE_NUMBER',
      field,
      `${field} must be at most ${MAX_RAW_LENGTH} characters`,
    )
  }
  const parsed = parsePhoneNumberFromString(raw, defaultRegion)
  // An extension ("ext. 12") cannot receive an SMS; refusing it beats silently dropping it.
  if (parsed === undefined || !parsed.isValid() || parsed.ext !== undefined) {
    throw invalidField(
      'INVALID_PHONE_NUMBER',
      field,
      defaultRegion === undefined
        ? `${field} is not a valid phone number; use E.164 such as +14155550123`
        : `${field} is not a valid phone number`,
    )
  }
  return parsed.number
}

/**
 * PhoneParser is parsePhone with a bounded memo of accepted numbers: a full-metadata parse costs
 * ~20 µs, and each flow sends the same number in two or more calls. Refusals are not memoised,
 * so hostile input cannot fill the memo with garbage it then has to evict.
 */
export class PhoneParser {
  readonly #defaultRegion: CountryCode | undefined
  readonly #memo: LRUCache<string, string>

  /** memoMax bounds the memo; it only needs the numbers of the flows in progress. */
  constructor(defaultRegion: CountryCode | undefined, memoMax: number) {
    this.#defaultRegion = defaultRegion
    this.#memo = new LRUCache({ max: memoMax })
  }

  /** parse is parsePhone with the configured region. Throws INVALID_PHONE_NUMBER on `field`. */
  parse(raw: string, field?: string): string {
    const known = this.#memo.get(raw)
    if (known !== undefined) return known
    const phone = parsePhone(raw, this.#defaultRegion, field)
    this.#memo.set(raw, phone)
    return phone
  }

  /** region is the ISO 3166 country of an E.164 number ('001' for non-geographic ones). */
  region(e164: string): string {
    return parsePhoneNumberFromString(e164)?.country ?? '001'
  }
}
