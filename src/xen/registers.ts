// The registers of a hypercall (x86_64: rax holds the number, rdi, rsi, rdx,
// r10, r8, r9 the arguments). Guest code hands the host a JS value for each;
// both modes turn it into a register here, at the guest boundary, so a call
// from a worker thread sees exactly what the same call sees in one thread.
//
// A register is 64 bits wide. A JS integer (number or bigint) is taken as C
// takes an integer converted to uint64_t: modulo 2^64, so -1 is 2^64 - 1.
// Anything a register cannot hold (a string, a fraction, NaN, null) is the
// caller's bug and a TypeError, in both modes.

/** Argument registers of a hypercall (rdi, rsi, rdx, r10, r8, r9). */
export const HYPERCALL_MAX_ARGS = 6;

const TWO32 = 0x1_0000_0000;
const TWO64 = 2n ** 64n;

/**
 * A register's value: a number when below 2^53 (every value up to there is
 * exact as a double), a bigint above.
 */
export type Register = number | bigint;

function describe(x: unknown): string {
  if (typeof x === 'string') return `the string ${JSON.stringify(x.length > 20 ? `${x.slice(0, 20)}…` : x)}`;
  if (typeof x === 'number') return String(x);
  if (x === null) return 'null';
  return typeof x;
}

/**
 * The register holding `x`, exactly. Throws a TypeError naming `what` (the
 * hypercall number or an argument) when `x` is not an integer number or bigint.
 */
export function toRegister(x: unknown, what: string): Register {
  if (typeof x === 'number') {
    // The common case: a small non-negative integer is its own register.
    if (x >>> 0 === x) return x + 0; // + 0: -0 is 0
    if (!Number.isInteger(x)) {
      throw new TypeError(`${what} must be an integer (a number or a bigint), got ${describe(x)}`);
    }
    if (x > 0 && x <= Number.MAX_SAFE_INTEGER) return x;
    return fromBig(BigInt(x));
  }
  if (typeof x === 'bigint') return fromBig(x);
  throw new TypeError(`${what} must be an integer (a number or a bigint), got ${describe(x)}`);
}

function fromBig(v: bigint): Register {
  const u = ((v % TWO64) + TWO64) % TWO64;
  return u <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(u) : u;
}

/** The hypercall number and arguments as registers; missing arguments read 0. */
export function hypercallRegisters(
  nr: unknown,
  args: readonly unknown[],
): { nr: Register; args: Register[] } {
  if (args.length > HYPERCALL_MAX_ARGS) {
    throw new TypeError(`a hypercall takes at most ${HYPERCALL_MAX_ARGS} arguments, got ${args.length}`);
  }
  const out: Register[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    // An argument left undefined is one not given: its register reads 0. A
    // small non-negative integer is its own register (toRegister's first case),
    // taken here so the common call builds no argument name it will not need.
    if (a === undefined) out.push(0);
    else if (typeof a === 'number' && a >>> 0 === a) out.push(a + 0);
    else out.push(toRegister(a, `hypercall argument ${i + 1}`));
  }
  return { nr: toRegister(nr, 'the hypercall number'), args: out };
}

/** A register as a number: exact below 2^53, rounded above (only range checks ever see those). */
export function reg(x: Register | undefined): number {
  if (x === undefined) return 0;
  return typeof x === 'number' ? x : Number(x);
}

/** A C `unsigned int` argument: the low 32 bits of the register, exactly. */
export function u32(x: Register | undefined): number {
  if (x === undefined) return 0;
  if (typeof x === 'bigint') return Number(BigInt.asUintN(32, x));
  // A register number is an integer, and >>> 0 is an integer modulo 2^32 exactly (% would call fmod).
  return x >>> 0;
}

/** A register as a bigint, exactly (a PTE, say). */
export function u64(x: Register | undefined): bigint {
  if (x === undefined) return 0n;
  return typeof x === 'bigint' ? x : BigInt(x);
}

/** A register split into its low and high 32-bit halves (to carry it through an Int32/Uint32 slot). */
export function splitRegister(x: Register): [lo: number, hi: number] {
  if (typeof x === 'number') return [x % TWO32, Math.floor(x / TWO32)];
  return [Number(x & 0xffff_ffffn), Number(x >> 32n)];
}

/** The register whose halves splitRegister gave. */
export function joinRegister(lo: number, hi: number): Register {
  if (hi < 0x20_0000) return hi * TWO32 + lo; // below 2^53
  return (BigInt(hi) << 32n) | BigInt(lo);
}
