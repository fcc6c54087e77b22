/** RpcObserver hears about every OtpAuth call the unary adapter runs (metrics hook in here). */
export interface RpcObserver {
  started(method: string): void
  /** status is the gRPC status name, such as OK or UNAUTHENTICATED. */
  finished(method: string, status: string, seconds: number): void
}
