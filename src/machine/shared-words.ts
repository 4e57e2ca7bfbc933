// Every access to a word that two parties touch concurrently (grant-entry flags,
// status words, later ring indices and event words) goes through these named
// operations, so the memory-ordering rules live in one place.
//
// JavaScript Atomics are sequentially consistent, which is at least as strong as
// the x86 `lock cmpxchg` / `lock and` Xen and Linux use, so each operation is a
// full barrier for the other Atomics operations. Plain typed-array accesses are
// not ordered: anything published to another party is written first with plain
// stores and then made visible by an Atomics store or RMW of the word that the
// other side checks (flags last on grant, status bits before re-reading the
// header in v2, and so on).

/** Names of the shared-word operations, as an interposer sees them. */
export type SharedOp =
  | 'load16'
  | 'store16'
  | 'cmpxchg16'
  | 'or16'
  | 'and16'
  | 'load32'
  | 'store32'
  | 'cmpxchg32'
  | 'or32';

export class SharedWords {
  /**
   * Called before every shared-word operation when set: lets a test act as a
   * concurrent party at each step (flip a guest's flags between Xen's read and
   * its CMPXCHG, say). Null in normal runs.
   */
  interpose: ((op: SharedOp, addr: number) => void) | null = null;
  /**
   * In-thread waiters (single-thread mode) learn of notify32 through this; in
   * worker mode Atomics.notify wakes threads blocked in Atomics.wait.
   */
  onNotify: ((addr: number) => void) | null = null;
  readonly u16: Uint16Array;
  readonly u32: Uint32Array;
  readonly i32: Int32Array;
  /** A private word used only as the target of fence(). */
  private readonly fenceWord: Int32Array;

  constructor(sab: SharedArrayBuffer) {
    this.u16 = new Uint16Array(sab);
    this.u32 = new Uint32Array(sab);
    this.i32 = new Int32Array(sab);
    this.fenceWord = new Int32Array(new SharedArrayBuffer(4));
  }

  /** Byte address must be 2-aligned. */
  load16(addr: number): number {
    if (this.interpose !== null) this.interpose('load16', addr);
    return Atomics.load(this.u16, addr >>> 1);
  }
  store16(addr: number, v: number): void {
    if (this.interpose !== null) this.interpose('store16', addr);
    Atomics.store(this.u16, addr >>> 1, v);
  }
  /** Returns the value found; the exchange happened iff it equals `expected`. */
  cmpxchg16(addr: number, expected: number, replacement: number): number {
    if (this.interpose !== null) this.interpose('cmpxchg16', addr);
    return Atomics.compareExchange(this.u16, addr >>> 1, expected, replacement);
  }
  or16(addr: number, bits: number): number {
    if (this.interpose !== null) this.interpose('or16', addr);
    return Atomics.or(this.u16, addr >>> 1, bits);
  }
  and16(addr: number, bits: number): number {
    if (this.interpose !== null) this.interpose('and16', addr);
    return Atomics.and(this.u16, addr >>> 1, bits);
  }
  /** Byte address must be 4-aligned. */
  load32(addr: number): number {
    if (this.interpose !== null) this.interpose('load32', addr);
    return Atomics.load(this.u32, addr >>> 2);
  }
  store32(addr: number, v: number): void {
    if (this.interpose !== null) this.interpose('store32', addr);
    Atomics.store(this.u32, addr >>> 2, v);
  }
  cmpxchg32(addr: number, expected: number, replacement: number): number {
    if (this.interpose !== null) this.interpose('cmpxchg32', addr);
    return Atomics.compareExchange(this.u32, addr >>> 2, expected >>> 0, replacement >>> 0);
  }
  /** OR into a 32-bit word (event words); returns the old value. */
  or32(addr: number, bits: number): number {
    if (this.interpose !== null) this.interpose('or32', addr);
    return Atomics.or(this.i32, addr >>> 2, bits);
  }
  /** Wakes everyone waiting on the Int32 word at addr (event words, ring doorbells). */
  notify32(addr: number): void {
    Atomics.notify(this.i32, addr >>> 2);
    if (this.onNotify !== null) this.onNotify(addr);
  }
  /** Blocks the calling thread while the Int32 at addr holds `expected` (workers only). */
  wait32(addr: number, expected: number, ms: number): 'ok' | 'not-equal' | 'timed-out' {
    return Atomics.wait(this.i32, addr >>> 2, expected | 0, ms);
  }
  /** Full memory barrier (smp_mb): an atomic RMW orders all Atomics accesses around it. */
  fence(): void {
    Atomics.add(this.fenceWord, 0, 0);
  }
}
