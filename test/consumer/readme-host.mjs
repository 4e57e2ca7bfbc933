// The README's host-API example, as a user pastes it into a plain .mjs file in
// a project that installed the gnttab tarball; prints what it saw as JSON.
import {
  __HYPERVISOR_grant_table_op,
  __HYPERVISOR_update_va_mapping,
  DOMID_SELF,
  decodeStruct,
  encodeStruct,
  GNTMAP_host_map,
  GNTTABOP_map_grant_ref,
  GNTTABOP_setup_table,
  GTF_permit_access,
  gnttab_map_grant_ref,
  gnttab_setup_table,
  Host,
} from 'gnttab';

const host = new Host({ memoryMiB: 64 });
const front = host.createDomain({ kind: 'pv' });
const back = host.createDomain({ kind: 'hvm' });

const arg = front.ramBytes - 4096;
front.memory.write(
  arg,
  encodeStruct(gnttab_setup_table, { dom: DOMID_SELF, nr_frames: 1, frame_list: arg + 64 }),
);
const setup = front.hypercall(__HYPERVISOR_grant_table_op, GNTTABOP_setup_table, arg, 1);
const mfn = Number(front.memory.readU64(arg + 64));
const va = front.hypercall(__HYPERVISOR_update_va_mapping, 0xc000_0000, mfn * 4096 + 0x3, 0);

front.memory.write(0x5000, new TextEncoder().encode('hello, backend!!'));
front.memory.writeU16(0xc000_0000 + 8 * 8 + 2, back.domid);
front.memory.writeU32(0xc000_0000 + 8 * 8 + 4, front.frameOf(0x5000));
front.memory.writeU16(0xc000_0000 + 8 * 8, GTF_permit_access);

const op = back.ramBytes - 4096;
back.memory.write(
  op,
  encodeStruct(gnttab_map_grant_ref, {
    host_addr: 0xe000_0000,
    flags: GNTMAP_host_map,
    ref: 8,
    dom: front.domid,
  }),
);
const map = back.hypercall(__HYPERVISOR_grant_table_op, GNTTABOP_map_grant_ref, op, 1);
const { status, handle } = decodeStruct(gnttab_map_grant_ref, back.memory.read(op, 32));
const bytes = new TextDecoder().decode(back.memory.read(0xe000_0000, 16));

host.destroyDomain(back.domid);
const invariants = host.checkInvariants();
console.log(JSON.stringify({ setup, va, map, status, handle, bytes, invariants }));
