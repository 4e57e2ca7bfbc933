// The 2-level ABI's bit operations on the shared-info page (event_2l.c).
import {
  BITS_PER_EVTCHN_WORD,
  SHARED_INFO_EVTCHN_MASK,
  SHARED_INFO_EVTCHN_PENDING,
  VCPU_INFO_PENDING_SEL,
  VCPU_INFO_UPCALL_PENDING,
  vcpuInfoOffset,
  XEN_LEGACY_MAX_VCPUS,
} from '../../abi/event-channel.ts';
import { XEN_PAGE_SIZE } from '../../abi/limits.ts';
import type { SharedWords } from '../../machine/shared-words.ts';
import type { Domain } from '../domain.ts';
import type { Hypervisor } from '../hypervisor.ts';
import { type EvtchnPort, usable } from './port-table.ts';

/** Little-endian bitmaps: bit n of a 64-bit word array lies in 16-bit word n >> 4, at bit n & 15. */
function testAndSetBit(w: SharedWords, base: number, bit: number): boolean {
  const m = 1 << (bit & 15);
  return (w.or16(base + (bit >>> 4) * 2, m) & m) !== 0;
}
function testAndClearBit(w: SharedWords, base: number, bit: number): boolean {
  const m = 1 << (bit & 15);
  return (w.and16(base + (bit >>> 4) * 2, ~m & 0xffff) & m) !== 0;
}
function testBit(w: SharedWords, base: number, bit: number): boolean {
  return (w.load16(base + (bit >>> 4) * 2) & (1 << (bit & 15))) !== 0;
}

/** Machine address of the domain's shared-info page. */
function sharedInfo(d: Domain): number {
  return d.sharedInfoMfn * XEN_PAGE_SIZE;
}

/** Machine address of the Int32 word holding vCPU `vcpu`'s evtchn_upcall_pending. */
export function upcallWordAddr(d: Domain, vcpu: number): number {
  return sharedInfo(d) + vcpuInfoOffset(vcpu) + VCPU_INFO_UPCALL_PENDING;
}

/**
 * vcpu_mark_events_pending: sets evtchn_upcall_pending and, on its 0 -> 1
 * transition only, kicks the vCPU: wakes whoever sleeps on that word.
 */
function markEventsPending(hv: Hypervisor, d: Domain, vcpu: number): void {
  const w = hv.machine.words;
  const a = upcallWordAddr(d, vcpu);
  if (testAndSetBit(w, a, 0)) return;
  w.notify32(a);
}

/**
 * evtchn_2l_set_pending, in Xen's strict order: the pending bit (done if it was
 * already set); then, if the port is not masked, the selector bit, and if that
 * was clear, the upcall flag. vCPUs past XEN_LEGACY_MAX_VCPUS have no
 * vcpu_info in the page (Xen points them at a dummy until they register one).
 */
export function setPending(hv: Hypervisor, d: Domain, chn: EvtchnPort): void {
  if (!usable(chn) || d.sharedInfoMfn < 0) return;
  const w = hv.machine.words;
  const si = sharedInfo(d);
  const port = chn.port;
  if (testAndSetBit(w, si + SHARED_INFO_EVTCHN_PENDING, port)) return;
  const v = chn.notifyVcpu;
  if (v >= XEN_LEGACY_MAX_VCPUS) return;
  if (
    !testBit(w, si + SHARED_INFO_EVTCHN_MASK, port) &&
    !testAndSetBit(w, si + vcpuInfoOffset(v) + VCPU_INFO_PENDING_SEL, Math.floor(port / BITS_PER_EVTCHN_WORD))
  )
    markEventsPending(hv, d, v);
}

/** evtchn_2l_clear_pending. */
export function clearPending(hv: Hypervisor, d: Domain, chn: EvtchnPort): void {
  if (d.sharedInfoMfn < 0) return;
  testAndClearBit(hv.machine.words, sharedInfo(d) + SHARED_INFO_EVTCHN_PENDING, chn.port);
}

/** evtchn_2l_unmask: clear the mask; if it was set and the port is pending, raise it again. */
export function unmask2l(hv: Hypervisor, d: Domain, chn: EvtchnPort): void {
  if (!usable(chn) || d.sharedInfoMfn < 0) return;
  const w = hv.machine.words;
  const si = sharedInfo(d);
  const v = chn.notifyVcpu;
  if (
    testAndClearBit(w, si + SHARED_INFO_EVTCHN_MASK, chn.port) &&
    testBit(w, si + SHARED_INFO_EVTCHN_PENDING, chn.port) &&
    v < XEN_LEGACY_MAX_VCPUS &&
    !testAndSetBit(
      w,
      si + vcpuInfoOffset(v) + VCPU_INFO_PENDING_SEL,
      Math.floor(chn.port / BITS_PER_EVTCHN_WORD),
    )
  )
    markEventsPending(hv, d, v);
}
