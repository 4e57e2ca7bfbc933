// The lines the vchan echo example sends: both sides compute them from the
// command line (`-- <count>`), so the server knows how much to echo.
export function messages(argv: readonly string[]): Uint8Array {
  const count = Number(argv[0] ?? 16);
  if (!Number.isInteger(count) || count < 1)
    throw new RangeError(`the count of lines is a whole number, not ${argv[0]}`);
  const lines = Array.from({ length: count }, (_, i) => `hello ${i} over vchan\n`).join('');
  return new TextEncoder().encode(lines);
}

export const echoPath = (server: number) => `/local/domain/${server}/data/echo`;
