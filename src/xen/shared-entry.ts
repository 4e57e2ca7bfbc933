// Fields of a guest's shared grant entry read in place in machine memory
// (the guest may change them at any time; each read is one snapshot).
import type { Hypervisor } from './hypervisor.ts';

/** A 64-bit frame field of a v2 entry (the guest writes it before publishing the flags). */
export function readU64(hv: Hypervisor, addr: number): number {
  const w = hv.machine.words;
  return w.load32(addr) + w.load32(addr + 4) * 0x1_0000_0000;
}
