import { Server, ServerCredentials, type ServerOptions } from '@grpc/grpc-js'
import { OtpAuthService, type OtpAuthServer } from '../gen/otpauth/v1/otpauth.js'

// The ceiling: the same proto and grpc-js server options as the service, with handlers that answer
// at once with canned messages. Whatever the real service loses against it is the service's own
// work (parsing, rules, SQLite, logging), not gRPC's.
const options: ServerOptions = {
  'grpc.max_receive_message_length': 16_384,
  'grpc.max_send_message_length': 16_384,
  'grpc.max_concurrent_streams': 1000,
  'grpc.enable_channelz': 0,
}
const expiresAt = new Date(Date.now() + 86_400_000)
const codeSent = {
  message: 'OTP sent to phone number',
  codeExpiresAt: new Date(Date.now() + 300_000),
  resendAvailableAt: new Date(Date.now() + 30_000),
}
const userId = '0b0e8ea6-5c4e-4a55-9d2f-6f0f7d1e2a33'
const implementation: OtpAuthServer = {
  register: (_call, callback) => {
    callback(null, codeSent)
  },
  verifyOtp: (_call, callback) => {
    callback(null, { message: 'OTP verified successfully, proceed to login' })
  },
  requestLoginCode: (_call, callback) => {
    callback(null, codeSent)
  },
  login: (_call, callback) => {
    callback(null, {
      message: 'Login successful',
      sessionToken: 'A'.repeat(43),
      expiresAt,
      userId,
    })
  },
  validateSession: (_call, callback) => {
    callback(null, {
      userId,
      phoneNumber: '+447100000000',
      expiresAt,
      sessionId: '5d0c1f7e-2b9a-4c1e-8f3d-6a7b8c9d0e1f',
      authenticatedAt: new Date(expiresAt.getTime() - 86_400_000),
    })
  },
  logout: (_call, callback) => {
    callback(null, {})
  },
  // Not benchmarked; answered so the server implements the whole contract.
  changePassword: (_call, callback) => {
    callback(null, {})
  },
  listSessions: (_call, callback) => {
    callback(null, { sessions: [] })
  },
  revokeSession: (_call, callback) => {
    callback(null, {})
  },
  requestPhoneChange: (_call, callback) => {
    callback(null, codeSent)
  },
  changePhoneNumber: (_call, callback) => {
    callback(null, { phoneNumber: '+447100000000' })
  },
  deleteAccount: (_call, callback) => {
    callback(null, {})
  },
  addEmail: (_call, callback) => {
    callback(null, { ...codeSent, message: 'OTP sent to email address' })
  },
  verifyEmail: (_call, callback) => {
    callback(null, { email: 'ana@example.com' })
  },
}

const server = new Server(options)
server.addService(OtpAuthService, implementation)
server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, port) => {
  if (error) throw error
  process.send?.({ type: 'ready', port })
})
process.on('disconnect', () => {
  server.forceShutdown()
  process.exit(0)
})
