// Replay tokens: the guest picked at every real choice of a schedule (where
// more than one guest could run), run-length coded, with the number of
// guests and of steps so a replay can tell it ran the same schedule.
// Format: "x1.<guests>.<steps>.<base64url of (guest, run length) varints>".

export interface ReplayToken {
  guests: number;
  steps: number;
  choices: number[];
}

const PREFIX = 'x1';

export function encodeToken(t: ReplayToken): string {
  const bytes: number[] = [];
  const varint = (v: number) => {
    let x = v;
    while (x >= 0x80) {
      bytes.push((x & 0x7f) | 0x80);
      x = Math.floor(x / 128);
    }
    bytes.push(x);
  };
  for (let i = 0; i < t.choices.length; ) {
    const g = t.choices[i]!;
    let n = 1;
    while (t.choices[i + n] === g) n++;
    varint(g);
    varint(n);
    i += n;
  }
  return `${PREFIX}.${t.guests}.${t.steps}.${Buffer.from(bytes).toString('base64url')}`;
}

export class TokenError extends Error {
  constructor(token: string, why: string) {
    super(`not a replay token (${why}): "${token.length > 40 ? `${token.slice(0, 40)}...` : token}"`);
    this.name = 'TokenError';
  }
}

export function decodeToken(token: string): ReplayToken {
  const parts = token.trim().split('.');
  if (parts.length !== 4 || parts[0] !== PREFIX) throw new TokenError(token, `expected ${PREFIX}.N.N.DATA`);
  const guests = Number(parts[1]);
  const steps = Number(parts[2]);
  if (!Number.isSafeInteger(guests) || guests < 1 || !Number.isSafeInteger(steps) || steps < 0)
    throw new TokenError(token, 'bad guest or step count');
  const data = parts[3]!;
  if (!/^[A-Za-z0-9_-]*$/.test(data)) throw new TokenError(token, 'the data is not base64url');
  const bytes = Buffer.from(data, 'base64url');
  let i = 0;
  const varint = (): number => {
    let v = 0;
    let mul = 1;
    for (;;) {
      const b = bytes[i++];
      if (b === undefined) throw new TokenError(token, 'truncated');
      v += (b & 0x7f) * mul;
      if ((b & 0x80) === 0) return v;
      mul *= 128;
      if (mul > 2 ** 35) throw new TokenError(token, 'a number is too long');
    }
  };
  const choices: number[] = [];
  while (i < bytes.length) {
    const g = varint();
    const n = varint();
    if (g >= guests || n < 1 || choices.length + n > steps)
      throw new TokenError(token, 'a choice does not fit the guest or step count');
    for (let k = 0; k < n; k++) choices.push(g);
  }
  return { guests, steps, choices };
}
