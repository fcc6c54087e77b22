/** Latency summary in milliseconds. */
export interface Latency {
  p50: number
  p90: number
  p99: number
  max: number
}

/** summarise sorts latencies (µs) in place and reads the percentiles, in ms. */
export function summarise(latencyUs: Float32Array): Latency {
  if (latencyUs.length === 0) return { p50: 0, p90: 0, p99: 0, max: 0 }
  latencyUs.sort()
  const at = (q: number): number =>
    round((latencyUs[Math.min(latencyUs.length - 1, Math.floor(q * latencyUs.length))] ?? 0) / 1000)
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: at(1) }
}

export function round(value: number, digits = 3): number {
  const f = 10 ** digits
  return Math.round(value * f) / f
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)] ?? 0
}
