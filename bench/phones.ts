// Every bench number is a UK mobile number +44 71xx xxxxxx … +44 73xx xxxxxx: libphonenumber's full
// metadata accepts all 3·10^8 of them (checked with isValid), so index i ↔ one valid number.
const FIRST = 7_100_000_000
export const PHONE_COUNT = 300_000_000

export function phoneOf(index: number): string {
  return `+44${FIRST + index}`
}

/** indexOfPhone reverses phoneOf; -1 for anything else. */
export function indexOfPhone(phone: string): number {
  if (!phone.startsWith('+447')) return -1
  const index = Number(phone.slice(3)) - FIRST
  return Number.isInteger(index) && index >= 0 && index < PHONE_COUNT ? index : -1
}

// The SMS sink writes the last code sent to each number into a shared table the load workers read
// right after their Register or RequestLoginCode call returns (the server answers only after the
// webhook answered, so the code is always there by then).
export const CODE_SLOTS = 1 << 21
const MASK = CODE_SLOTS - 1
const PRESENT = 1_000_000

export function storeCode(table: Int32Array, index: number, code: string): void {
  Atomics.store(table, index & MASK, PRESENT + Number(code))
}

/** takeCode returns the code last sent to the number and clears it, or undefined. */
export function takeCode(table: Int32Array, index: number): string | undefined {
  const value = Atomics.exchange(table, index & MASK, 0)
  return value === 0 ? undefined : String(value - PRESENT).padStart(6, '0')
}
