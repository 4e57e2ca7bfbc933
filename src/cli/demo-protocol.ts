// What the demo's host side and its two guest programs share: the progress
// words (test-harness instrumentation in a SharedArrayBuffer of the host, not
// domain memory) and the byte pattern the backend checks.

/** f64 slots */
export const BYTES_SENT = 0;
export const BYTES_RECEIVED = 1;
export const MISMATCHES = 2;
export const FIRST_MISMATCH = 3;
/** Wall-clock times (performance.timeOrigin + now(), ms) taken by the backend. */
export const CONNECTED_AT = 4;
export const DONE_AT = 5;
/** i32 slots, after the f64 ones */
/** Int32 index of the first flag: byte 64, after eight f64 slots. */
const I32_BASE = 16;
export const BACKEND_CONNECTED = I32_BASE + 0;
export const FRONTEND_DONE = I32_BASE + 1;
export const BACKEND_DONE = I32_BASE + 2;
/** Set by the host once it has looked at the grant tables: the guests may close. */
export const MAY_CLOSE = I32_BASE + 3;
/** Set by the backend once it has closed (unmapped everything): the frontend closes after it. */
export const BACKEND_CLOSED = I32_BASE + 4;
/** Set by the frontend once its vchan is published in xenstore (paced mode waits for it). */
export const FRONTEND_PUBLISHED = I32_BASE + 5;
export const PROGRESS_BYTES = 128;

/** A clock every thread agrees on. */
export function wallMs(): number {
  return performance.timeOrigin + performance.now();
}

export interface DemoGuestArgs {
  progress: SharedArrayBuffer;
  peer: number;
  size: number;
  ringSize: number;
  chunk: number;
  layout: 1 | 2;
  path: string;
  /**
   * Paced mode (`gnttab demo --serve`): each side pauses this many ms at each
   * step (granted but not mapped, mapped before the data, unmapped but still
   * granted) and between chunks a twentieth of it, so a viewer sees every
   * state. 0: full speed.
   */
  paceMs: number;
}

/** The byte at stream offset i: varies within a page and from page to page. */
export function patternByte(i: number): number {
  return ((i & 4095) * 7 + Math.floor(i / 4096) * 131 + 17) & 0xff;
}

/** Fills buf with the pattern for stream offsets [off, off + buf.length). */
export function fillPattern(buf: Uint8Array, off: number): void {
  for (let k = 0; k < buf.length; k++) buf[k] = patternByte(off + k);
}

/** Counts the bytes of buf that differ from the pattern at [off, ...); returns [count, first offset or -1]. */
export function checkPattern(buf: Uint8Array, off: number, len: number): [number, number] {
  let bad = 0;
  let first = -1;
  for (let k = 0; k < len; k++) {
    if (buf[k] !== patternByte(off + k)) {
      if (first < 0) first = off + k;
      bad++;
    }
  }
  return [bad, first];
}

export function views(sab: SharedArrayBuffer): { f64: Float64Array; i32: Int32Array } {
  return { f64: new Float64Array(sab), i32: new Int32Array(sab) };
}
