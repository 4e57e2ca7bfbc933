// Names for what a trace shows: a machine address resolved against the
// structures it belongs to (a grant entry's field, a v2 status word, event
// bits in a shared-info page, a board word), and a hypercall by op.
import {
  EVTCHNOP_NAMES,
  SHARED_INFO_EVTCHN_MASK,
  SHARED_INFO_EVTCHN_PENDING,
} from '../../abi/event-channel.ts';
import { gnttab_map_grant_ref, gnttab_unmap_grant_ref } from '../../abi/gnttab-ops.ts';
import {
  __HYPERVISOR_event_channel_op,
  __HYPERVISOR_grant_table_op,
  __HYPERVISOR_memory_op,
  __HYPERVISOR_update_va_mapping,
  errnoName,
  GNTTABOP_CMD_MASK,
  GNTTABOP_map_grant_ref,
  GNTTABOP_NAMES,
  GNTTABOP_unmap_grant_ref,
} from '../../abi/hypercall.ts';
import { GRANT_ENTRY_V1_SIZE, GRANT_ENTRY_V2_SIZE, XEN_PAGE_SIZE } from '../../abi/limits.ts';
import { readStruct } from '../../abi/struct.ts';
import type { Host } from '../../host/host.ts';

const V1_FIELDS: Record<number, string> = { 0: 'flags', 2: 'domid', 4: 'frame' };
const V2_FIELDS: Record<number, string> = { 0: 'flags', 2: 'domid', 4: 'page_off', 6: 'length', 8: 'frame' };

/** "flags of d2's ref 8", "status of d2's ref 8", "evtchn_pending of d1 (ports 0-31)", "board[0]", ... */
export function nameAddress(host: Host, addr: number): string {
  if (addr < 0) return `board[${-addr - 1}]`;
  const mfn = Math.floor(addr / XEN_PAGE_SIZE);
  const off = addr % XEN_PAGE_SIZE;
  for (const d of host.hypervisor.domains.values()) {
    const gt = d.gt;
    const i = gt.shared.indexOf(mfn);
    if (i >= 0) {
      const size = gt.version === 1 ? GRANT_ENTRY_V1_SIZE : GRANT_ENTRY_V2_SIZE;
      const ref = (i * XEN_PAGE_SIZE + off - (off % size)) / size;
      const fields = gt.version === 1 ? V1_FIELDS : V2_FIELDS;
      const field = fields[off % size] ?? `byte ${off % size}`;
      return `${field} of d${d.domid}'s ref ${ref}`;
    }
    const s = gt.status.indexOf(mfn);
    if (s >= 0) return `status of d${d.domid}'s ref ${(s * XEN_PAGE_SIZE + off) / 2}`;
    if (mfn === d.sharedInfoMfn) {
      for (const [base, what] of [
        [SHARED_INFO_EVTCHN_PENDING, 'evtchn_pending'],
        [SHARED_INFO_EVTCHN_MASK, 'evtchn_mask'],
      ] as const) {
        if (off >= base && off < base + 512) {
          const bit = (off - base) * 8;
          return `${what} of d${d.domid} (ports ${bit}-${bit + 31})`;
        }
      }
      return `shared info of d${d.domid} +0x${off.toString(16)}`;
    }
    if (d.owned.has(mfn)) return `d${d.domid}'s page (mfn 0x${mfn.toString(16)}) +0x${off.toString(16)}`;
  }
  return `mfn 0x${mfn.toString(16)} +0x${off.toString(16)}`;
}

/**
 * A hypercall as a trace shows it, from the caller's registers (and, for
 * map and unmap, the first element in its memory, read before Xen runs).
 */
export function describeHypercall(
  host: Host,
  domid: number,
  nr: number | bigint,
  args: readonly (number | bigint)[],
): string {
  const a = args.map((x) => Number(x));
  if (nr === __HYPERVISOR_grant_table_op) {
    const cmd = (a[0] ?? 0) & GNTTABOP_CMD_MASK;
    const name = GNTTABOP_NAMES[cmd] ?? `grant_table_op ${cmd}`;
    const count = a[2] ?? 0;
    const mem = host.domain(domid)?.memory;
    try {
      if (mem !== undefined && cmd === GNTTABOP_map_grant_ref && count >= 1) {
        const op = readStruct(mem, a[1] ?? 0, gnttab_map_grant_ref);
        return `${name}(ref ${op.ref} of d${op.dom}${count > 1 ? `, +${count - 1} more` : ''})`;
      }
      if (mem !== undefined && cmd === GNTTABOP_unmap_grant_ref && count >= 1) {
        const op = readStruct(mem, a[1] ?? 0, gnttab_unmap_grant_ref);
        return `${name}(handle ${op.handle}${count > 1 ? `, +${count - 1} more` : ''})`;
      }
    } catch {
      // An argument the guest cannot read: Xen will answer -EFAULT; show the registers.
    }
    return `${name}(count ${count})`;
  }
  if (nr === __HYPERVISOR_event_channel_op) return `evtchn ${EVTCHNOP_NAMES[a[0] ?? -1] ?? a[0]}`;
  if (nr === __HYPERVISOR_memory_op) return `memory_op ${a[0]}`;
  if (nr === __HYPERVISOR_update_va_mapping) return `update_va_mapping(0x${(a[0] ?? 0).toString(16)})`;
  return `hypercall ${nr}`;
}

/** A hypercall's return as text: 0, or its errno name. */
export function describeReturn(rc: number): string {
  return rc === 0 ? '0' : rc < 0 ? errnoName(rc) : String(rc);
}
