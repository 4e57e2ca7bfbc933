// Machine memory: one SharedArrayBuffer of 4 KiB frames, shared by the hypervisor
// and every domain's guest code (later across worker threads).
import { XEN_PAGE_SHIFT, XEN_PAGE_SIZE } from '../abi/limits.ts';
import { SharedWords } from './shared-words.ts';

/** One page of zeroes, the source of zeroFrame. */
const ZERO_PAGE = new Uint8Array(XEN_PAGE_SIZE);

export class MachineMemory {
  readonly sab: SharedArrayBuffer;
  readonly nrFrames: number;
  readonly u8: Uint8Array;
  /** Little-endian field access over all of machine memory (plain, not atomic). */
  readonly view: DataView;
  /** 32-bit words for the MMU's table walks (Atomics, but outside the interposable shared words). */
  readonly u32: Uint32Array;
  readonly words: SharedWords;

  constructor(nrFrames: number, sab?: SharedArrayBuffer) {
    if (!Number.isInteger(nrFrames) || nrFrames < 16)
      throw new RangeError(`machine memory needs at least 16 frames, got ${nrFrames}`);
    if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1)
      throw new Error('gnttab needs a little-endian platform (Xen ABI is little-endian)');
    this.nrFrames = nrFrames;
    this.sab = sab ?? new SharedArrayBuffer(nrFrames * XEN_PAGE_SIZE);
    this.u8 = new Uint8Array(this.sab);
    this.view = new DataView(this.sab);
    this.u32 = new Uint32Array(this.sab);
    this.words = new SharedWords(this.sab);
  }

  /** Byte address of frame `mfn` in machine memory. */
  static addr(mfn: number): number {
    return mfn * XEN_PAGE_SIZE;
  }

  frame(mfn: number): Uint8Array {
    return this.u8.subarray(mfn << XEN_PAGE_SHIFT, (mfn + 1) << XEN_PAGE_SHIFT);
  }

  zeroFrame(mfn: number): void {
    // A copy from a zero page: fill() over a SharedArrayBuffer takes a slow path in V8 (about 8x slower).
    this.u8.set(ZERO_PAGE, mfn * XEN_PAGE_SIZE);
  }
}
