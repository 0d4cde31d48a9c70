import { describe, expect, it } from "vitest";
import { formatMoney, minorDigits, parseAmount, toDecimalString } from "./money";

describe("money", () => {
  it("knows each currency's minor digits", () => {
    expect(minorDigits("USD")).toBe(2);
    expect(minorDigits("JPY")).toBe(0);
    expect(minorDigits("KWD")).toBe(3);
  });

  it("writes minor units as an exact decimal string", () => {
    expect(toDecimalString(1500, "USD")).toBe("15.00");
    expect(toDecimalString(-5, "USD")).toBe("-0.05");
    expect(toDecimalString(0, "USD")).toBe("0.00");
    expect(toDecimalString(1234, "JPY")).toBe("1234");
    expect(toDecimalString(9007199254740991, "USD")).toBe("90071992547409.91");
  });

  it("formats in the given locale", () => {
    expect(formatMoney(1500, "USD", "en-US")).toBe("$15.00");
    expect(formatMoney(123456, "EUR", "de-DE")).toBe("1.234,56\u00a0€");
    expect(formatMoney(-1000, "USD", "en-US", { signed: true })).toBe("-$10.00");
    expect(formatMoney(2500, "USD", "en-US", { signed: true })).toBe("+$25.00");
  });

  it("parses what a user types into minor units", () => {
    expect(parseAmount("25", "USD")).toBe(2500);
    expect(parseAmount("25.00", "USD")).toBe(2500);
    expect(parseAmount("0.1", "USD")).toBe(10);
    expect(parseAmount("10,5", "EUR")).toBe(1050);
    expect(parseAmount("100", "JPY")).toBe(100);
  });

  it("refuses what is not a positive amount of the currency", () => {
    for (const text of ["", "abc", "-5", "0", "0.00", "1.234", "1e3", "1.2.3", "10.5", "1 000"]) {
      const currency = text === "10.5" ? "JPY" : "USD";
      expect(parseAmount(text, currency), text).toBeNull();
    }
  });
});
