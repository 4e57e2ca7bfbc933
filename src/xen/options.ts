// Checks of the options a host and its domains are made with: a value of the
// wrong type is a TypeError, one out of range a RangeError, each naming the
// option and what it takes. (`transitive: 'no'` must not read as "on".)

function shown(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'bigint') return `${v}n`;
  return v === null ? 'null' : typeof v === 'object' || typeof v === 'function' ? typeof v : String(v);
}

/** A boolean option, or its default when undefined. */
export function boolOption(name: string, v: unknown, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  if (typeof v !== 'boolean') throw new TypeError(`${name} must be true or false, got ${shown(v)}`);
  return v;
}

/**
 * An integer option from min to max, or its default when undefined. `why`
 * says what the bound is (Xen's answer, or the field that carries it).
 */
export function intOption(
  name: string,
  v: unknown,
  dflt: number,
  min: number,
  max: number,
  why = '',
): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number') throw new TypeError(`${name} must be a number, got ${shown(v)}`);
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new RangeError(`${name} must be an integer from ${min} to ${max}${why}, got ${shown(v)}`);
  }
  return v;
}

/** An options object: undefined, or a plain object. */
export function objectOption<T extends object>(name: string, v: T | undefined): Partial<T> {
  if (v === undefined) return {};
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    throw new TypeError(`${name} must be an object of options, got ${shown(v)}`);
  }
  return v;
}
