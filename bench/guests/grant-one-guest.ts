// Benchmark guest: maps its own grant table and grants one page to a peer; returns the ref.
import type { GuestContext } from '../../src/guest/context.ts';
import {
  __HYPERVISOR_grant_table_op,
  __HYPERVISOR_update_va_mapping,
  DOMID_SELF,
  encodeStruct,
  GNTTABOP_setup_table,
  GTF_permit_access,
  gnttab_setup_table,
} from '../../src/index.ts';

export default function main(ctx: GuestContext, a: { grantee: number }): number {
  const arg = ctx.start.ramBytes - 4 * 4096;
  ctx.mem.write(
    arg,
    encodeStruct(gnttab_setup_table, { dom: DOMID_SELF, nr_frames: 1, frame_list: arg + 512 }),
  );
  if (ctx.hypercall(__HYPERVISOR_grant_table_op, GNTTABOP_setup_table, arg, 1) !== 0)
    throw new Error('setup_table');
  const mfn = Number(ctx.mem.readU64(arg + 512));
  if (ctx.hypercall(__HYPERVISOR_update_va_mapping, 0xc000_0000, mfn * 4096 + 3, 0) !== 0)
    throw new Error('map table');
  const page = 0x10000;
  // PV: the frame is the MFN behind the page; read it from the guest's view of its own table.
  const ref = 8;
  const e = 0xc000_0000 + ref * 8;
  ctx.mem.writeU16(e + 2, a.grantee);
  ctx.mem.writeU32(e + 4, frameOfPv(ctx, page));
  ctx.mem.store16(e, GTF_permit_access);
  return ref;
}

/** A PV guest knows the MFN of its pages (its own page tables); here: through the machine memory walk. */
function frameOfPv(ctx: GuestContext, addr: number): number {
  return ctx.mem.frameOf(addr);
}
