/** Clock tells the time in epoch milliseconds; rules take it as a parameter so tests can move it. */
export interface Clock {
  now(): number
}

export const systemClock: Clock = { now: () => Date.now() }
