// The raw ABI, step by step, as a Xen guest kernel speaks it: C structs placed
// in the guest's own memory and hypercalls with addresses in its own address
// space (xen/include/public/grant_table.h). A PV frontend grants a page to an
// HVM backend, which maps it, copies into it, and unmaps it; the frontend then
// revokes the grant. Every step checks its status and logs what it did. A
// `gnttab dump` scenario (default export taking a Host); the dump after it
// shows both tables as the walkthrough leaves them (clean).
//   gnttab dump examples/raw-abi.ts
import {
  __HYPERVISOR_grant_table_op,
  __HYPERVISOR_update_va_mapping,
  DOMID_SELF,
  decodeStruct,
  encodeStruct,
  GNTCOPY_dest_gref,
  GNTMAP_host_map,
  GNTMAP_readonly,
  GNTST_okay,
  GNTTABOP_copy,
  GNTTABOP_map_grant_ref,
  GNTTABOP_setup_table,
  GNTTABOP_unmap_grant_ref,
  GTF_permit_access,
  GTF_reading,
  GTF_writing,
  gntstName,
  gnttab_copy,
  gnttab_map_grant_ref,
  gnttab_setup_table,
  gnttab_unmap_grant_ref,
  type Host,
} from 'gnttab';

/** What the walkthrough saw, for a test to check. */
export interface Walkthrough {
  steps: string[];
  /** What the backend read through its mapping. */
  read: string;
  /** What the frontend finds in its page after the backend's copy. */
  copied: string;
}

const GNT_VA = 0xc000_0000; // where the frontend maps its grant frame (above RAM)
const MAP_VA = 0xe000_0000; // where the backend maps the frontend's page
const PAGE = 0x5000; // the frontend's page it grants
const REF = 8; // the first ref past the reserved ones (GNTTAB_NR_RESERVED_ENTRIES)

function check(what: string, rc: number, status = GNTST_okay): void {
  if (rc !== 0 || status !== GNTST_okay) throw new Error(`${what}: rc ${rc}, status ${status}`);
}

export function walkthrough(host: Host, log: (line: string) => void = () => {}): Walkthrough {
  const steps: string[] = [];
  const step = (line: string) => {
    steps.push(line);
    log(`${String(steps.length).padStart(2)}. ${line}`);
  };
  const front = host.createDomain({ kind: 'pv', memoryKiB: 1024 });
  const back = host.createDomain({ kind: 'hvm', memoryKiB: 1024 });
  // Each guest keeps a scratch page at the top of its RAM for hypercall arguments.
  const farg = front.ramBytes - 4096;
  const barg = back.ramBytes - 4096;

  // 1. setup_table: Xen writes the MFN of the frontend's grant frame into frame_list.
  front.memory.write(
    farg,
    encodeStruct(gnttab_setup_table, { dom: DOMID_SELF, nr_frames: 1, frame_list: farg + 64 }),
  );
  let rc = front.hypercall(__HYPERVISOR_grant_table_op, GNTTABOP_setup_table, farg, 1);
  check('setup_table', rc, decodeStruct(gnttab_setup_table, front.memory.read(farg, 24)).status);
  const mfn = Number(front.memory.readU64(farg + 64));
  step(`d${front.domid} setup_table: its grant frame is MFN 0x${mfn.toString(16)}`);

  // 2. update_va_mapping: a PV guest maps that frame (present | writable) to fill it in.
  rc = front.hypercall(__HYPERVISOR_update_va_mapping, GNT_VA, mfn * 4096 + 0x3, 0);
  check('update_va_mapping', rc);
  step(`d${front.domid} update_va_mapping: the grant frame at 0x${GNT_VA.toString(16)}`);

  // 3. A grant_entry_v1 { u16 flags; u16 domid; u32 frame }: domid and frame first, flags last.
  front.memory.write(PAGE, new TextEncoder().encode('hello, backend!\0'));
  const entry = GNT_VA + REF * 8;
  front.memory.writeU16(entry + 2, back.domid);
  front.memory.writeU32(entry + 4, front.frameOf(PAGE));
  front.memory.writeU16(entry, GTF_permit_access);
  step(`d${front.domid} grants ref ${REF} (frame 0x${front.frameOf(PAGE).toString(16)}) to d${back.domid}`);

  // 4. map_grant_ref: the backend maps the page into its own physical address space.
  back.memory.write(
    barg,
    encodeStruct(gnttab_map_grant_ref, {
      host_addr: MAP_VA,
      flags: GNTMAP_host_map,
      ref: REF,
      dom: front.domid,
    }),
  );
  rc = back.hypercall(__HYPERVISOR_grant_table_op, GNTTABOP_map_grant_ref, barg, 1);
  const map = decodeStruct(gnttab_map_grant_ref, back.memory.read(barg, 32));
  check('map_grant_ref', rc, map.status);
  const flags = front.memory.readU16(entry);
  const read = new TextDecoder().decode(back.memory.read(MAP_VA, 15));
  step(
    `d${back.domid} map_grant_ref: handle ${map.handle}; the entry now says ${flags & GTF_writing ? 'reading|writing' : 'reading'}; it reads "${read}"`,
  );

  // 5. copy: Xen copies from the backend's own frame into the granted page (GNTCOPY_dest_gref).
  back.memory.write(0x3000, new TextEncoder().encode('copied by Xen\0'));
  back.memory.write(
    barg + 64,
    encodeStruct(gnttab_copy, {
      source_u: back.frameOf(0x3000),
      source_domid: DOMID_SELF,
      source_offset: 0,
      dest_u: REF,
      dest_domid: front.domid,
      dest_offset: 16,
      len: 14,
      flags: GNTCOPY_dest_gref,
    }),
  );
  rc = back.hypercall(__HYPERVISOR_grant_table_op, GNTTABOP_copy, barg + 64, 1);
  check('copy', rc, decodeStruct(gnttab_copy, back.memory.read(barg + 64, 40)).status);
  const copied = new TextDecoder().decode(front.memory.read(PAGE + 16, 13));
  step(`d${back.domid} copy: 14 bytes into ref ${REF} at offset 16; d${front.domid} finds "${copied}"`);

  // 6. unmap_grant_ref: the handle and the address the map returned.
  back.memory.write(barg, encodeStruct(gnttab_unmap_grant_ref, { host_addr: MAP_VA, handle: map.handle }));
  rc = back.hypercall(__HYPERVISOR_grant_table_op, GNTTABOP_unmap_grant_ref, barg, 1);
  check('unmap_grant_ref', rc, decodeStruct(gnttab_unmap_grant_ref, back.memory.read(barg, 24)).status);
  step(`d${back.domid} unmap_grant_ref: handle ${map.handle} released`);

  // 7. Revoke, as Linux's gnttab_end_foreign_access_ref_v1: only while neither reading nor writing.
  const now = front.memory.readU16(entry);
  if ((now & (GTF_reading | GTF_writing)) !== 0) throw new Error('the entry is still in use after the unmap');
  front.memory.writeU16(entry, 0);
  step(`d${front.domid} ends access to ref ${REF} (flags were 0x${now.toString(16)})`);

  // A read-only map after the revoke is refused: the entry no longer permits access.
  back.memory.write(
    barg,
    encodeStruct(gnttab_map_grant_ref, {
      host_addr: MAP_VA,
      flags: GNTMAP_host_map | GNTMAP_readonly,
      ref: REF,
      dom: front.domid,
    }),
  );
  back.hypercall(__HYPERVISOR_grant_table_op, GNTTABOP_map_grant_ref, barg, 1);
  const refused = decodeStruct(gnttab_map_grant_ref, back.memory.read(barg, 32)).status;
  if (refused === GNTST_okay) throw new Error('a map of a revoked grant succeeded');
  step(`d${back.domid} map_grant_ref of the revoked ref: ${gntstName(refused)} (${refused})`);
  return { steps, read, copied };
}

/** On stderr, so that `gnttab dump --json` still prints JSON alone on stdout. */
export default function scenario(host: Host): void {
  walkthrough(host, (line) => console.error(line));
}
