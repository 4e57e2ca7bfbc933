// The pv/hvm × v1/v2 combinations most tests loop over, and the loop that names
// the combination in any failure.
export const KINDS = ['pv', 'hvm'] as const;
export const VERSIONS = [1, 2] as const;
export const KIND_ONLY = KINDS.map((k) => [k] as const);
export const COMBOS = KINDS.flatMap((k) => VERSIONS.map((v) => [k, v] as const));
/** Granter kind × grantee kind. */
export const PAIRS = KINDS.flatMap((g) => KINDS.map((b) => [g, b] as const));

/** Runs `fn` for each combination, naming the combination in any failure. */
export function forEach<T extends readonly unknown[]>(
  combos: readonly T[],
  fn: (...c: [...T]) => void,
): void {
  for (const c of combos) {
    try {
      fn(...c);
    } catch (e) {
      if (e instanceof Error) e.message = `[${c.join(' ')}] ${e.message}`;
      throw e;
    }
  }
}
