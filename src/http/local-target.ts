/**
 * localTarget is how a process reaches its own gRPC server: the bound host, or loopback when it
 * listens on every interface.
 */
export function localTarget(address: string, port: number): string {
  const host = address.slice(0, address.lastIndexOf(':'))
  if (host === '0.0.0.0' || host === '') return `127.0.0.1:${port}`
  if (host === '[::]' || host === '::') return `[::1]:${port}`
  return `${host}:${port}`
}
