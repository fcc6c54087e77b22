/**
 * detachedAscii is a flat copy of an ASCII string that refers to nothing else. V8 may keep a
 * substring as a view into its whole parent, or a concatenation as a rope of its parts: a key
 * kept for long (in a cache, a bucket) should hold only its own bytes.
 */
export function detachedAscii(text: string): string {
  return Buffer.from(text, 'latin1').toString('latin1')
}
