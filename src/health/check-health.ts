import { Client, credentials, Metadata } from '@grpc/grpc-js'
import { BinaryReader, BinaryWriter, WireType } from '@bufbuild/protobuf/wire'

const STATUS_NAMES = ['UNKNOWN', 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN']

/**
 * checkHealth asks grpc.health.v1.Health/Check about `service` ("" is the whole server) and
 * returns the status name, such as SERVING. Rejects when the call fails. The two messages are
 * encoded by hand so the probe needs nothing but grpc-js.
 */
export function checkHealth(target: string, service: string, timeoutMs: number): Promise<string> {
  const request = new BinaryWriter().tag(1, WireType.LengthDelimited).string(service).finish()
  const client = new Client(target, credentials.createInsecure())
  const identity = (b: Buffer): Buffer => b
  return new Promise<string>((resolve, reject) => {
    client.makeUnaryRequest(
      '/grpc.health.v1.Health/Check',
      identity,
      identity,
      Buffer.from(request),
      new Metadata(),
      { deadline: Date.now() + timeoutMs },
      (error, response) => {
        client.close()
        if (error) {
          reject(error)
          return
        }
        let status = 0
        const reader = new BinaryReader(response ?? Buffer.alloc(0))
        while (reader.pos < reader.len) {
          const [field, wireType] = reader.tag()
          if (field === 1) status = reader.int32()
          else reader.skip(wireType)
        }
        resolve(STATUS_NAMES[status] ?? `UNKNOWN(${status})`)
      },
    )
  })
}
