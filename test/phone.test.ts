import { budgetKeys } from '../src/auth/sms-budget.js'
import { describe, expect, it } from 'vitest'
import { AuthError } from '../src/auth/auth-error.js'
import { parsePhone, PhoneParser } from '../src/auth/phone.js'

describe('parsePhone', () => {
  it.each([
    ['+14155552671', undefined, '+14155552671'],
    [' +14155552671 ', undefined, '+14155552671'],
    ['+1 (415) 555-2671', undefined, '+14155552671'],
    ['+1.415.555.2671', undefined, '+14155552671'],
    ['tel:+1-415-555-2671', undefined, '+14155552671'],
    ['(415) 555-2671', 'US', '+14155552671'],
    ['14155552671', 'US', '+14155552671'],
    ['07911 123456', 'GB', '+447911123456'],
    ['+44 7911 123456', 'US', '+447911123456'],
    ['011 44 7911 123456', 'US', '+447911123456'],
    ['00 44 7911 123456', 'DE', '+447911123456'],
    ['0151 12345678', 'DE', '+4915112345678'],
    ['+49 151 12345678', undefined, '+4915112345678'],
    ['+44 20 7946 0958', undefined, '+442079460958'],
    ['+33 6 12 34 56 78', undefined, '+33612345678'],
    // Unicode digits are folded to ASCII before validation.
    ['+1415555267\uff11', undefined, '+14155552671'],
  ] as const)('when %j is given with region %s, then it is %s', (raw, region, e164) => {
    expect(parsePhone(raw, region)).toBe(e164)
  })

  it.each([
    ['', undefined],
    ['   ', 'US'],
    ['abc', undefined],
    ['+1000', undefined],
    ['+10000000000', undefined],
    ['+1 415 555 267', undefined],
    ['+1 415 555 26711', undefined],
    ['+0 123', undefined],
    ['+999 1234567', undefined],
    ['+1-800-FLOWERS', undefined],
    // An extension cannot receive an SMS.
    ['+1 415 555 2671 ext. 12', undefined],
    ['(415) 555-2671', undefined],
    ['14155552671', undefined],
    [`+1415555267${'1'.repeat(54)}`, undefined],
    ['+14155552671'.padEnd(65, ' '), undefined],
  ] as const)(
    'when %j is given with region %s, then INVALID_PHONE_NUMBER on phone_number',
    (raw, region) => {
      let thrown: unknown
      try {
        parsePhone(raw, region)
      } catch (error) {
        thrown = error
      }
      expect(thrown).toBeInstanceOf(AuthError)
      expect((thrown as AuthError).reason).toBe('INVALID_PHONE_NUMBER')
      expect((thrown as AuthError).violation?.field).toBe('phone_number')
    },
  )
})

describe('PhoneParser', () => {
  it('when a number is parsed again, then the memo gives the same E.164 and refusals stay refusals', () => {
    const phones = new PhoneParser('US', 2, 3)

    expect(phones.parse('(415) 555-2671')).toBe('+14155552671')
    expect(phones.parse('(415) 555-2671')).toBe('+14155552671')
    expect(phones.parse('+447911123456')).toBe('+447911123456')
    expect(phones.parse('+4915112345678')).toBe('+4915112345678')
    expect(() => phones.parse('+1000')).toThrow(AuthError)
    expect(() => phones.parse('+1000')).toThrow(AuthError)
  })

  it('when a number is parsed, then its budget keys and region are those of a fresh parse', () => {
    const phones = new PhoneParser('US', 4, 3)

    const e164 = phones.parse('(415) 555-2671')

    expect(phones.budgetKeys(e164)).toEqual(budgetKeys(e164, 3))
    expect(phones.region(e164)).toBe('US')
    expect(phones.region('+442071838750')).toBe('GB')
    expect(phones.budgetKeys('+442071838750')).toEqual({ country: 'GB', prefix: '+44207' })
    // Non-geographic numbers have no region, and count against their calling code's budget.
    expect(phones.region('+80012345678')).toBe('001')
    expect(phones.budgetKeys('+80012345678')).toEqual(budgetKeys('+80012345678', 3))
    expect(phones.region('not a number')).toBe('001')
  })
})
