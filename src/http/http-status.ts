import { status } from '@grpc/grpc-js'

/**
 * The gRPC → HTTP status table Envoy's transcoder uses (Envoy source/common/grpc/status.cc,
 * grpcToHttpStatus), which grpc-gateway v2 and Google's APIs share.
 */
const HTTP_STATUS = new Map<number, number>(
  Object.entries({
    [status.OK]: 200,
    [status.CANCELLED]: 499,
    [status.UNKNOWN]: 500,
    [status.INVALID_ARGUMENT]: 400,
    [status.DEADLINE_EXCEEDED]: 504,
    [status.NOT_FOUND]: 404,
    [status.ALREADY_EXISTS]: 409,
    [status.PERMISSION_DENIED]: 403,
    [status.RESOURCE_EXHAUSTED]: 429,
    [status.FAILED_PRECONDITION]: 400,
    [status.ABORTED]: 409,
    [status.OUT_OF_RANGE]: 400,
    [status.UNIMPLEMENTED]: 501,
    [status.INTERNAL]: 500,
    [status.UNAVAILABLE]: 503,
    [status.DATA_LOSS]: 500,
    [status.UNAUTHENTICATED]: 401,
  }).map(([code, http]) => [Number(code), http]),
)

/** httpStatusOf maps a gRPC status code to the HTTP status a transcoding gateway answers with. */
export function httpStatusOf(code: number): number {
  return HTTP_STATUS.get(code) ?? 500
}
