// Money is an integer count of minor units plus an ISO 4217 code, as in the API. Nothing here
// converts it to a binary float: amounts become decimal strings, which Intl formats exactly.

/** Digits after the decimal point of a currency (2 for USD, 0 for JPY, 3 for KWD). */
export function minorDigits(currency: string): number {
  return (
    new Intl.NumberFormat("en", { style: "currency", currency }).resolvedOptions()
      .maximumFractionDigits ?? 2
  );
}

/** The exact decimal string of `minor` units ("-1500" USD → "-15.00"). */
export function toDecimalString(minor: number, currency: string): string {
  const digits = minorDigits(currency);
  const negative = minor < 0;
  const units = String(Math.abs(minor)).padStart(digits + 1, "0");
  const whole = digits ? units.slice(0, -digits) : units;
  const fraction = digits ? `.${units.slice(-digits)}` : "";
  return `${negative ? "-" : ""}${whole}${fraction}`;
}

/** `minor` units formatted for the user's locale, e.g. "$15.00" or "15,00 €". */
export function formatMoney(
  minor: number,
  currency: string,
  locale?: string,
  options: { signed?: boolean } = {},
): string {
  const format = new Intl.NumberFormat(locale, {
    style: "currency",
    currency,
    signDisplay: options.signed ? "exceptZero" : "auto",
  });
  // Intl formats a decimal string exactly (no rounding through a float).
  return format.format(toDecimalString(minor, currency) as unknown as number);
}

/** Minor units from what the user typed ("25", "25.5", "25,50"); null when it is not an amount. */
export function parseAmount(text: string, currency: string): number | null {
  const digits = minorDigits(currency);
  const match = /^\s*(\d{1,12})(?:[.,](\d*))?\s*$/.exec(text);
  if (!match) return null;
  const fraction = match[2] ?? "";
  if (fraction.length > digits) return null;
  const minor = Number(match[1] + fraction.padEnd(digits, "0"));
  return Number.isSafeInteger(minor) && minor > 0 ? minor : null;
}
