import { readFileSync } from 'node:fs'
import {
  createFileRegistry,
  fromBinary,
  getOption,
  hasOption,
  type DescMethod,
  type FileRegistry,
} from '@bufbuild/protobuf'
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt'

// Written by `npm run generate` (buf build); the same relative path from src/http and dist/src/http.
export const DESCRIPTOR_SET_URL = new URL('../../gen/otpauth.binpb', import.meta.url)

/** The fields of google.api.HttpRule this door reads, as @bufbuild/protobuf shapes them. */
interface HttpRuleShape {
  pattern:
    | { case: 'get' | 'put' | 'post' | 'delete' | 'patch'; value: string }
    | { case: 'custom'; value: { kind: string; path: string } }
    | { case: undefined; value?: undefined }
  body: string
  responseBody: string
  additionalBindings: HttpRuleShape[]
}

/** HttpRoute is one binding of one RPC: an HTTP method and a compiled path template. */
export interface HttpRoute {
  httpMethod: string
  /** The template as written in the proto, such as /api/register/. */
  template: string
  method: DescMethod
  /** "*" (whole body is the request), a field name, or "" (no body). */
  body: string
  /** A response field to answer with instead of the whole response; "" for the whole response. */
  responseBody: string
  /** match returns the path variables by field path, or undefined when the path does not match. */
  match(path: string): Map<string, string> | undefined
}

/** loadRegistry reads a FileDescriptorSet (such as gen/otpauth.binpb) into a registry. */
export function loadRegistry(url: URL = DESCRIPTOR_SET_URL): FileRegistry {
  return createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(url)))
}

/**
 * httpRoutes lists every google.api.http binding (additional bindings included) of every unary
 * method of the named services. Throws when a service is not in the registry.
 */
export function httpRoutes(registry: FileRegistry, services: readonly string[]): HttpRoute[] {
  const httpOption = registry.getExtension('google.api.http')
  if (httpOption === undefined) throw new Error('google.api.http is not in the descriptor set')
  const routes: HttpRoute[] = []
  for (const name of services) {
    const service = registry.getService(name)
    if (service === undefined) throw new Error(`service ${name} is not in the descriptor set`)
    for (const method of service.methods) {
      if (method.methodKind !== 'unary' || !hasOption(method, httpOption)) continue
      const option: unknown = getOption(method, httpOption)
      const rule = option as HttpRuleShape
      for (const binding of [rule, ...rule.additionalBindings]) {
        const route = compileBinding(method, binding, rule.responseBody)
        if (route !== undefined) routes.push(route)
      }
    }
  }
  return routes
}

function compileBinding(
  method: DescMethod,
  binding: HttpRuleShape,
  parentResponseBody: string,
): HttpRoute | undefined {
  const pattern = binding.pattern
  if (pattern.case === undefined) return undefined
  const [httpMethod, template] =
    pattern.case === 'custom'
      ? [pattern.value.kind.toUpperCase(), pattern.value.path]
      : [pattern.case.toUpperCase(), pattern.value]
  const { regex, variables } = compileTemplate(template)
  return {
    httpMethod,
    template,
    method,
    body: binding.body,
    responseBody: binding.responseBody || parentResponseBody,
    match: (path) => {
      const found = regex.exec(path)
      if (found === null) return undefined
      const values = new Map<string, string>()
      variables.forEach((field, i) => {
        values.set(field, decodeURIComponent(found[i + 1] ?? ''))
      })
      return values
    },
  }
}

/**
 * compileTemplate turns an HttpRule path template (segments, `*`, `**`, `{field}`,
 * `{field=a/*}`, `:verb`) into an anchored regular expression with one group per variable.
 */
export function compileTemplate(template: string): { regex: RegExp; variables: string[] } {
  if (!template.startsWith('/')) throw new Error(`path template "${template}" must start with /`)
  let rest = template.slice(1)
  let verb = ''
  const lastSlash = rest.lastIndexOf('/')
  const colon = rest.indexOf(':', Math.max(lastSlash, rest.lastIndexOf('}')))
  if (colon >= 0) {
    verb = rest.slice(colon + 1)
    rest = rest.slice(0, colon)
  }
  const variables: string[] = []
  const segment = (text: string): string => {
    if (text === '*') return '[^/]+'
    if (text === '**') return '.+'
    return escapeRegex(encodeURI(text))
  }
  const parts: string[] = []
  for (const piece of splitSegments(rest)) {
    const variable = /^\{([A-Za-z_][\w.]*)(?:=(.+))?\}$/.exec(piece)
    if (variable === null) {
      parts.push(segment(piece))
      continue
    }
    variables.push(variable[1] ?? '')
    const inner = (variable[2] ?? '*').split('/').map(segment).join('/')
    parts.push(`(${inner})`)
  }
  const source = `^/${parts.join('/')}${verb === '' ? '' : `:${escapeRegex(verb)}`}$`
  return { regex: new RegExp(source), variables }
}

/** splitSegments splits on "/" outside braces, keeping an empty last segment (a trailing slash). */
function splitSegments(path: string): string[] {
  const out: string[] = []
  let depth = 0
  let current = ''
  for (const ch of path) {
    if (ch === '{') depth += 1
    if (ch === '}') depth -= 1
    if (ch === '/' && depth === 0) {
      out.push(current)
      current = ''
    } else {
      current += ch
    }
  }
  out.push(current)
  return out
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}
