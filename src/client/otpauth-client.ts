import {
  credentials as grpcCredentials,
  Metadata,
  status,
  type CallOptions,
  type ChannelCredentials,
  type ClientOptions,
  type ClientUnaryCall,
  type ServiceError,
} from '@grpc/grpc-js'
import {
  Channel,
  OtpAuthClient as GeneratedClient,
  LogoutRequest as LogoutRequestMessage,
  RequestLoginCodeRequest as RequestLoginCodeRequestMessage,
  type AddEmailRequest,
  type AddEmailResponse,
  type VerifyEmailRequest,
  type VerifyEmailResponse,
  type ChangePasswordRequest,
  type ChangePasswordResponse,
  type ChangePhoneNumberRequest,
  type ChangePhoneNumberResponse,
  type DeleteAccountRequest,
  type DeleteAccountResponse,
  type ListSessionsRequest,
  type ListSessionsResponse,
  type LoginRequest,
  type LoginResponse,
  type LogoutRequest,
  type LogoutResponse,
  type RegisterRequest,
  type RegisterResponse,
  type RequestLoginCodeRequest,
  type RequestLoginCodeResponse,
  type RequestPhoneChangeRequest,
  type RequestPhoneChangeResponse,
  type RevokeSessionRequest,
  type RevokeSessionResponse,
  type ValidateSessionRequest,
  type ValidateSessionResponse,
  type VerifyOtpRequest,
  type VerifyOtpResponse,
} from '../../gen/otpauth/v1/otpauth.js'
import { BadRequest, ErrorInfo, RetryInfo } from '../../gen/google/rpc/error_details.js'
import { Status } from '../../gen/google/rpc/status.js'

// Re-exported so callers can choose a channel without importing generated code.
export { Channel }

export interface FieldViolation {
  field: string
  description: string
  reason: string
}

/**
 * OtpAuthError is a failed call with its google.rpc details decoded: the ErrorInfo reason, the
 * RetryInfo delay and the BadRequest field violations.
 */
export class OtpAuthError extends Error {
  readonly code: status
  readonly reason: string | undefined
  readonly domain: string | undefined
  readonly errorMetadata: Readonly<Record<string, string>>
  readonly retryDelayMs: number | undefined
  readonly violations: readonly FieldViolation[]
  /** The status as decoded from grpc-status-details-bin, when present. */
  readonly details: Status | undefined

  constructor(error: ServiceError) {
    super(error.details || error.message)
    this.name = 'OtpAuthError'
    this.code = error.code
    const raw = error.metadata.get('grpc-status-details-bin')[0]
    const details = raw instanceof Buffer ? Status.decode(raw) : undefined
    this.details = details
    let info: ErrorInfo | undefined
    let retry: RetryInfo | undefined
    let badRequest: BadRequest | undefined
    for (const any of details?.details ?? []) {
      const type = any.typeUrl.slice(any.typeUrl.lastIndexOf('/') + 1)
      if (type === 'google.rpc.ErrorInfo') info = ErrorInfo.decode(any.value)
      else if (type === 'google.rpc.RetryInfo') retry = RetryInfo.decode(any.value)
      else if (type === 'google.rpc.BadRequest') badRequest = BadRequest.decode(any.value)
    }
    this.reason = info?.reason
    this.domain = info?.domain
    this.errorMetadata = info?.metadata ?? {}
    this.retryDelayMs =
      retry?.retryDelay === undefined
        ? undefined
        : Number(retry.retryDelay.seconds) * 1000 + Math.round(retry.retryDelay.nanos / 1e6)
    this.violations = (badRequest?.fieldViolations ?? []).map((v) => ({
      field: v.field,
      description: v.description,
      reason: v.reason,
    }))
  }
}

export interface CallSettings {
  /** Deadline for this call in ms; the client's default otherwise. */
  timeoutMs?: number
  /** Extra metadata, such as x-forwarded-for from a trusted proxy. */
  metadata?: Record<string, string>
}

export interface OtpAuthClientOptions {
  credentials?: ChannelCredentials
  /** Default deadline per call. */
  timeoutMs?: number
  channelOptions?: Partial<ClientOptions>
}

type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (error: ServiceError | null, response: Res) => void,
) => ClientUnaryCall

/**
 * OtpAuthClient is a promise API over the generated grpc-js client, with a default deadline and
 * errors decoded into OtpAuthError.
 */
export class OtpAuthClient {
  readonly #client: GeneratedClient
  readonly #timeoutMs: number

  constructor(address: string, options: OtpAuthClientOptions = {}) {
    this.#client = new GeneratedClient(
      address,
      options.credentials ?? grpcCredentials.createInsecure(),
      options.channelOptions,
    )
    this.#timeoutMs = options.timeoutMs ?? 5_000
  }

  register(request: RegisterRequest, settings?: CallSettings): Promise<RegisterResponse> {
    return this.#call((r, md, o, cb) => this.#client.register(r, md, o, cb), request, settings)
  }

  verifyOtp(request: VerifyOtpRequest, settings?: CallSettings): Promise<VerifyOtpResponse> {
    return this.#call((r, md, o, cb) => this.#client.verifyOtp(r, md, o, cb), request, settings)
  }

  /** requestLoginCode asks for a login code, by SMS unless `channel` says email. */
  requestLoginCode(
    request: Omit<RequestLoginCodeRequest, 'channel'> & { channel?: Channel },
    settings?: CallSettings,
  ): Promise<RequestLoginCodeResponse> {
    return this.#call(
      (r, md, o, cb) => this.#client.requestLoginCode(r, md, o, cb),
      RequestLoginCodeRequestMessage.fromPartial(request),
      settings,
    )
  }

  addEmail(request: AddEmailRequest, settings?: CallSettings): Promise<AddEmailResponse> {
    return this.#call((r, md, o, cb) => this.#client.addEmail(r, md, o, cb), request, settings)
  }

  verifyEmail(request: VerifyEmailRequest, settings?: CallSettings): Promise<VerifyEmailResponse> {
    return this.#call((r, md, o, cb) => this.#client.verifyEmail(r, md, o, cb), request, settings)
  }

  login(request: LoginRequest, settings?: CallSettings): Promise<LoginResponse> {
    return this.#call((r, md, o, cb) => this.#client.login(r, md, o, cb), request, settings)
  }

  validateSession(
    request: ValidateSessionRequest,
    settings?: CallSettings,
  ): Promise<ValidateSessionResponse> {
    return this.#call(
      (r, md, o, cb) => this.#client.validateSession(r, md, o, cb),
      request,
      settings,
    )
  }

  /** logout ends the session; with `allSessions`, every session of its account. */
  logout(
    request: Omit<LogoutRequest, 'allSessions'> & { allSessions?: boolean },
    settings?: CallSettings,
  ): Promise<LogoutResponse> {
    return this.#call(
      (r, md, o, cb) => this.#client.logout(r, md, o, cb),
      LogoutRequestMessage.fromPartial(request),
      settings,
    )
  }

  changePassword(
    request: ChangePasswordRequest,
    settings?: CallSettings,
  ): Promise<ChangePasswordResponse> {
    return this.#call(
      (r, md, o, cb) => this.#client.changePassword(r, md, o, cb),
      request,
      settings,
    )
  }

  listSessions(
    request: ListSessionsRequest,
    settings?: CallSettings,
  ): Promise<ListSessionsResponse> {
    return this.#call((r, md, o, cb) => this.#client.listSessions(r, md, o, cb), request, settings)
  }

  revokeSession(
    request: RevokeSessionRequest,
    settings?: CallSettings,
  ): Promise<RevokeSessionResponse> {
    return this.#call((r, md, o, cb) => this.#client.revokeSession(r, md, o, cb), request, settings)
  }

  requestPhoneChange(
    request: RequestPhoneChangeRequest,
    settings?: CallSettings,
  ): Promise<RequestPhoneChangeResponse> {
    return this.#call(
      (r, md, o, cb) => this.#client.requestPhoneChange(r, md, o, cb),
      request,
      settings,
    )
  }

  changePhoneNumber(
    request: ChangePhoneNumberRequest,
    settings?: CallSettings,
  ): Promise<ChangePhoneNumberResponse> {
    return this.#call(
      (r, md, o, cb) => this.#client.changePhoneNumber(r, md, o, cb),
      request,
      settings,
    )
  }

  deleteAccount(
    request: DeleteAccountRequest,
    settings?: CallSettings,
  ): Promise<DeleteAccountResponse> {
    return this.#call((r, md, o, cb) => this.#client.deleteAccount(r, md, o, cb), request, settings)
  }

  close(): void {
    this.#client.close()
  }

  #call<Req, Res>(
    method: UnaryMethod<Req, Res>,
    request: Req,
    settings: CallSettings = {},
  ): Promise<Res> {
    const metadata = new Metadata()
    for (const [key, value] of Object.entries(settings.metadata ?? {})) metadata.set(key, value)
    const deadline = Date.now() + (settings.timeoutMs ?? this.#timeoutMs)
    return new Promise<Res>((resolve, reject) => {
      method.call(this.#client, request, metadata, { deadline }, (error, response) => {
        if (error) reject(new OtpAuthError(error))
        else resolve(response)
      })
    })
  }
}
