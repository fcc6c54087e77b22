import type { AuthService, CodeSent } from '../auth/auth-service.js'
import { AuthError } from '../auth/auth-error.js'
import {
  Channel,
  type AddEmailRequest,
  type AddEmailResponse,
  type VerifyEmailRequest,
  type VerifyEmailResponse,
  type ChangePasswordRequest,
  ChangePasswordResponse,
  ChangePhoneNumberRequest,
  ChangePhoneNumberResponse,
  DeleteAccountRequest,
  DeleteAccountResponse,
  ListSessionsRequest,
  ListSessionsResponse,
  LoginRequest,
  LoginResponse,
  LogoutRequest,
  LogoutResponse,
  RegisterRequest,
  RegisterResponse,
  RequestLoginCodeRequest,
  RequestLoginCodeResponse,
  RequestPhoneChangeRequest,
  RequestPhoneChangeResponse,
  RevokeSessionRequest,
  RevokeSessionResponse,
  ValidateSessionRequest,
  ValidateSessionResponse,
  VerifyOtpRequest,
  VerifyOtpResponse,
} from '../../gen/otpauth/v1/otpauth.js'
import type { UnaryHandler } from './unary.js'

// The original API's answers, kept word for word: clients match on them.
export const CODE_SENT_MESSAGE = 'OTP sent to phone number'
export const VERIFIED_MESSAGE = 'OTP verified successfully, proceed to login'
export const LOGIN_MESSAGE = 'Login successful'
export const EMAIL_CODE_SENT_MESSAGE = 'OTP sent to email address'

/** channelOf maps the API's channel; values this version does not know are refused, not guessed. */
function channelOf(channel: Channel): 'sms' | 'email' {
  if (channel === Channel.CHANNEL_EMAIL) return 'email'
  if (channel === Channel.CHANNEL_SMS || channel === Channel.CHANNEL_UNSPECIFIED) return 'sms'
  throw new AuthError('INVALID_CHANNEL', {
    violation: { field: 'channel', description: 'channel must be CHANNEL_SMS or CHANNEL_EMAIL' },
  })
}

export interface OtpAuthHandlers {
  register: UnaryHandler<RegisterRequest, RegisterResponse>
  verifyOtp: UnaryHandler<VerifyOtpRequest, VerifyOtpResponse>
  requestLoginCode: UnaryHandler<RequestLoginCodeRequest, RequestLoginCodeResponse>
  login: UnaryHandler<LoginRequest, LoginResponse>
  validateSession: UnaryHandler<ValidateSessionRequest, ValidateSessionResponse>
  logout: UnaryHandler<LogoutRequest, LogoutResponse>
  changePassword: UnaryHandler<ChangePasswordRequest, ChangePasswordResponse>
  listSessions: UnaryHandler<ListSessionsRequest, ListSessionsResponse>
  revokeSession: UnaryHandler<RevokeSessionRequest, RevokeSessionResponse>
  requestPhoneChange: UnaryHandler<RequestPhoneChangeRequest, RequestPhoneChangeResponse>
  changePhoneNumber: UnaryHandler<ChangePhoneNumberRequest, ChangePhoneNumberResponse>
  deleteAccount: UnaryHandler<DeleteAccountRequest, DeleteAccountResponse>
  addEmail: UnaryHandler<AddEmailRequest, AddEmailResponse>
  verifyEmail: UnaryHandler<VerifyEmailRequest, VerifyEmailResponse>
}

/** createHandlers translates between the API's messages and AuthService; no rules live here. */
export function createHandlers(auth: AuthService): OtpAuthHandlers {
  const codeSent = (sent: CodeSent): RegisterResponse => ({
    message: CODE_SENT_MESSAGE,
    codeExpiresAt: new Date(sent.codeExpiresAt),
    resendAvailableAt: new Date(sent.resendAvailableAt),
  })
  return {
    register: async (req, { caller }) =>
      codeSent(await auth.register({ phone: req.phoneNumber, password: req.password }, caller)),

    verifyOtp: async (req, { caller }) => {
      await auth.verifyOtp({ phone: req.phoneNumber, code: req.code }, caller)
      return { message: VERIFIED_MESSAGE }
    },

    requestLoginCode: async (req, { caller }) => {
      const channel = channelOf(req.channel)
      const sent = codeSent(
        await auth.requestLoginCode({ phone: req.phoneNumber, channel }, caller),
      )
      // The same words whether or not the account has an address: the answer reveals nothing.
      return channel === 'email' ? { ...sent, message: EMAIL_CODE_SENT_MESSAGE } : sent
    },

    login: async (req, { caller }) => {
      const credential =
        req.credential === undefined
          ? undefined
          : req.credential.$case === 'password'
            ? { kind: 'password' as const, value: req.credential.value }
            : { kind: 'code' as const, value: req.credential.value }
      const session = await auth.login({ phone: req.phoneNumber, credential }, caller)
      return {
        message: LOGIN_MESSAGE,
        sessionToken: session.token,
        expiresAt: new Date(session.expiresAt),
        userId: session.userId,
      }
    },

    validateSession: async (req) => {
      const session = await auth.validateSession({ token: req.sessionToken })
      return {
        userId: session.userId,
        phoneNumber: session.phone,
        expiresAt: new Date(session.expiresAt),
        sessionId: session.id,
        authenticatedAt: new Date(session.authenticatedAt),
      }
    },

    logout: async (req) => {
      await auth.logout({ token: req.sessionToken, allSessions: req.allSessions })
      return {}
    },

    changePassword: async (req) => {
      await auth.changePassword({ token: req.sessionToken, newPassword: req.newPassword })
      return {}
    },

    listSessions: async (req) => {
      const sessions = await auth.listSessions({ token: req.sessionToken })
      return {
        sessions: sessions.map((s) => ({
          sessionId: s.id,
          createdAt: new Date(s.createdAt),
          expiresAt: new Date(s.expiresAt),
          authenticatedAt: new Date(s.authenticatedAt),
          clientAddress: s.clientKey,
          current: s.current,
        })),
      }
    },

    revokeSession: async (req) => {
      await auth.revokeSession({ token: req.sessionToken, sessionId: req.sessionId })
      return {}
    },

    requestPhoneChange: async (req, { caller }) =>
      codeSent(
        await auth.requestPhoneChange(
          { token: req.sessionToken, newPhone: req.newPhoneNumber },
          caller,
        ),
      ),

    changePhoneNumber: async (req, { caller }) => ({
      phoneNumber: await auth.changePhoneNumber(
        { token: req.sessionToken, newPhone: req.newPhoneNumber, code: req.code },
        caller,
      ),
    }),

    deleteAccount: async (req) => {
      await auth.deleteAccount({ token: req.sessionToken })
      return {}
    },

    addEmail: async (req, { caller }) => ({
      ...codeSent(await auth.addEmail({ token: req.sessionToken, email: req.email }, caller)),
      message: EMAIL_CODE_SENT_MESSAGE,
    }),

    verifyEmail: async (req, { caller }) => ({
      email: await auth.verifyEmail({ token: req.sessionToken, code: req.code }, caller),
    }),
  }
}
