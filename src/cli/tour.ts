// The tour of the hypervisor alone (`gnttab tour`): a frontend domain grants pages, a backend
// domain maps one and copies from another, through Xen's raw hypercall ABI;
// then both grant tables are shown while the mapping is live, and everything
// is torn down cleanly.
import { DOMID_SELF } from '../abi/domid.ts';
import { GNTCOPY_source_gref, GNTMAP_host_map, GTF_permit_access, GTF_readonly } from '../abi/flags.ts';
import {
  gnttab_copy,
  gnttab_get_status_frames,
  gnttab_map_grant_ref,
  gnttab_set_version,
  gnttab_setup_table,
  gnttab_unmap_grant_ref,
} from '../abi/gnttab-ops.ts';
import {
  _PAGE_PRESENT,
  _PAGE_RW,
  GNTTABOP_copy,
  GNTTABOP_get_status_frames,
  GNTTABOP_map_grant_ref,
  GNTTABOP_set_version,
  GNTTABOP_setup_table,
  GNTTABOP_unmap_grant_ref,
  XENMAPIDX_grant_table_status,
  XENMAPSPACE_grant_table,
} from '../abi/hypercall.ts';
import { gntstName } from '../abi/status.ts';
import type { GuestContext } from '../guest/context.ts';
import { addToPhysmap, grantTableOp, updateVaMapping } from '../guest/hypercall.ts';
import { type DomainHandle, Host } from '../host/host.ts';
import { snapshotTables, type TableSnapshot } from '../host/snapshot.ts';

export interface TourOptions {
  layout: 1 | 2;
  frontend: 'pv' | 'hvm';
  backend: 'pv' | 'hvm';
}

export interface TourStep {
  who: string;
  what: string;
  result: string;
}

export interface TourReport {
  options: TourOptions;
  steps: TourStep[];
  /** Grant tables while the backend's mapping is live. */
  tables: TableSnapshot[];
  /** Invariant violations at the end (empty when all hold). */
  invariants: string[];
  ok: boolean;
}

const GNTTAB_VA = 0xc000_0000;
const STATUS_VA = 0xd000_0000;
const MAP_VA = 0xe000_0000;

class TourError extends Error {}

function check(cond: boolean, what: string): void {
  if (!cond) throw new TourError(what);
}

/** Maps a domain's own grant table (and v2 status frame) into its address space. */
function mapOwnTable(dom: DomainHandle, ctx: GuestContext, steps: TourStep[]): void {
  const v2 = dom.xen.gt.version === 2;
  if (dom.kind === 'pv') {
    const list = dom.ramBytes - 4096 + 256;
    const st = grantTableOp(ctx, GNTTABOP_setup_table, gnttab_setup_table, [
      { dom: DOMID_SELF, nr_frames: 1, frame_list: list },
    ]);
    check(st.rc === 0 && st.out[0]!.status === 0, 'setup_table failed');
    const mfn = Number(dom.memory.readU64(list));
    check(
      updateVaMapping(ctx, GNTTAB_VA, mfn * 4096 + (_PAGE_PRESENT | _PAGE_RW)) === 0,
      'update_va_mapping failed',
    );
    steps.push({
      who: `d${dom.domid}`,
      what: 'setup_table(1 frame), map it with update_va_mapping',
      result: `MFN 0x${mfn.toString(16)} at 0x${GNTTAB_VA.toString(16)}`,
    });
    if (v2) {
      const gs = grantTableOp(ctx, GNTTABOP_get_status_frames, gnttab_get_status_frames, [
        { dom: DOMID_SELF, nr_frames: 1, frame_list: list },
      ]);
      check(gs.rc === 0 && gs.out[0]!.status === 0, 'get_status_frames failed');
      const smfn = Number(dom.memory.readU64(list));
      check(
        updateVaMapping(ctx, STATUS_VA, smfn * 4096 + _PAGE_PRESENT) === 0,
        'mapping the status frame failed',
      );
      steps.push({
        who: `d${dom.domid}`,
        what: 'get_status_frames(1), map it read-only',
        result: `MFN 0x${smfn.toString(16)}`,
      });
    }
  } else {
    check(
      addToPhysmap(ctx, DOMID_SELF, XENMAPSPACE_grant_table, 0, GNTTAB_VA / 4096) === 0,
      'add_to_physmap failed',
    );
    steps.push({
      who: `d${dom.domid}`,
      what: 'add_to_physmap(grant_table, idx 0)',
      result: `at GFN 0x${(GNTTAB_VA / 4096).toString(16)}`,
    });
    if (v2) {
      const rc = addToPhysmap(
        ctx,
        DOMID_SELF,
        XENMAPSPACE_grant_table,
        XENMAPIDX_grant_table_status,
        STATUS_VA / 4096,
      );
      check(rc === 0, 'add_to_physmap(status) failed');
      steps.push({
        who: `d${dom.domid}`,
        what: 'add_to_physmap(grant_table | status, idx 0)',
        result: `at GFN 0x${(STATUS_VA / 4096).toString(16)}`,
      });
    }
  }
}

/** Writes entry `ref` as Linux does: domid and frame first, then the flags. */
function grant(dom: DomainHandle, ref: number, grantee: number, frame: number, flags: number): void {
  const v2 = dom.xen.gt.version === 2;
  const a = GNTTAB_VA + ref * (v2 ? 16 : 8);
  dom.memory.writeU16(a + 2, grantee);
  if (v2) dom.memory.writeU64(a + 8, frame);
  else dom.memory.writeU32(a + 4, frame);
  dom.memory.writeU16(a, flags);
}

export function runTour(o: TourOptions): TourReport {
  const steps: TourStep[] = [];
  const host = new Host({ memoryMiB: 16 });
  const back = host.createDomain({ kind: o.backend, memoryKiB: 1024 });
  const front = host.createDomain({ kind: o.frontend, memoryKiB: 1024 });
  steps.push({
    who: 'host',
    what: `create d${back.domid} (backend, ${o.backend}) and d${front.domid} (frontend, ${o.frontend})`,
    result: '1 MiB of RAM each',
  });
  const fCtx = host.context(front.domid);
  const bCtx = host.context(back.domid);
  const enc = new TextEncoder();
  const dec = new TextDecoder();

  if (o.layout === 2) {
    const sv = grantTableOp(fCtx, GNTTABOP_set_version, gnttab_set_version, [{ version: 2 }]);
    check(sv.rc === 0 && sv.out[0]!.version === 2, `set_version(2) returned ${sv.rc}`);
    steps.push({ who: `d${front.domid}`, what: 'set_version(2)', result: 'layout v2, one status frame' });
  }
  mapOwnTable(front, fCtx, steps);

  const shared = 0x10000;
  const readonlyPage = 0x11000;
  front.memory.write(shared, enc.encode('request: hello backend'));
  front.memory.write(readonlyPage, enc.encode('read-only data for copy'));
  grant(front, 8, back.domid, front.frameOf(shared), GTF_permit_access);
  grant(front, 9, back.domid, front.frameOf(readonlyPage), GTF_permit_access | GTF_readonly);
  steps.push({
    who: `d${front.domid}`,
    what: `grant ref 8 (read-write) and ref 9 (read-only) to d${back.domid}`,
    result: 'flags written last',
  });

  const m = grantTableOp(bCtx, GNTTABOP_map_grant_ref, gnttab_map_grant_ref, [
    { host_addr: MAP_VA, flags: GNTMAP_host_map, ref: 8, dom: front.domid },
  ]);
  const mo = m.out[0]!;
  check(m.rc === 0 && mo.status === 0, `map_grant_ref: ${gntstName(mo.status)}`);
  const seen = dec.decode(back.memory.read(MAP_VA, 22));
  steps.push({
    who: `d${back.domid}`,
    what: `map_grant_ref(d${front.domid}, ref 8) at 0x${MAP_VA.toString(16)}`,
    result: `handle ${mo.handle}, reads "${seen}"`,
  });
  back.memory.write(MAP_VA + 64, enc.encode('response: hello frontend'));
  const reply = dec.decode(front.memory.read(shared + 64, 24));
  check(reply === 'response: hello frontend', 'the reply did not arrive');
  steps.push({
    who: `d${back.domid}`,
    what: 'write a reply through the mapping',
    result: `d${front.domid} reads "${reply}"`,
  });

  const dstPage = 0x20000;
  const c = grantTableOp(bCtx, GNTTABOP_copy, gnttab_copy, [
    {
      source_u: 9,
      source_domid: front.domid,
      source_offset: 0,
      dest_u: back.frameOf(dstPage),
      dest_domid: DOMID_SELF,
      dest_offset: 0,
      len: 23,
      flags: GNTCOPY_source_gref,
    },
  ]);
  check(c.rc === 0 && c.out[0]!.status === 0, `copy: ${gntstName(c.out[0]!.status)}`);
  steps.push({
    who: `d${back.domid}`,
    what: `copy 23 bytes from d${front.domid} ref 9 to its own page`,
    result: `"${dec.decode(back.memory.read(dstPage, 23))}"`,
  });

  const w = grantTableOp(bCtx, GNTTABOP_copy, gnttab_copy, [
    {
      source_u: back.frameOf(dstPage),
      source_domid: DOMID_SELF,
      dest_u: 9,
      dest_domid: front.domid,
      len: 4,
      flags: 2,
    },
  ]);
  steps.push({
    who: `d${back.domid}`,
    what: `copy into read-only ref 9`,
    result: `refused: ${gntstName(w.out[0]!.status)}`,
  });

  const tables = snapshotTables(host.hypervisor);

  const u = grantTableOp(bCtx, GNTTABOP_unmap_grant_ref, gnttab_unmap_grant_ref, [
    { host_addr: MAP_VA, handle: mo.handle },
  ]);
  check(u.rc === 0 && u.out[0]!.status === 0, 'unmap failed');
  steps.push({
    who: `d${back.domid}`,
    what: `unmap handle ${mo.handle}`,
    result: 'GTF_reading/GTF_writing cleared',
  });
  // End of access: the entry is no longer in use, so clearing its flags is safe.
  for (const ref of [8, 9]) grant(front, ref, 0, 0, 0);
  steps.push({ who: `d${front.domid}`, what: 'end access to refs 8 and 9', result: 'entries invalid' });
  host.destroyDomain(front.domid);
  host.destroyDomain(back.domid);
  const invariants = host.checkInvariants();
  steps.push({
    who: 'host',
    what: 'destroy both domains',
    result:
      invariants.length === 0
        ? 'all invariants hold, nothing leaked'
        : `${invariants.length} invariant violations`,
  });
  return { options: o, steps, tables, invariants, ok: invariants.length === 0 };
}
