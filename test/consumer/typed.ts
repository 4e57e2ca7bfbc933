// A strict TypeScript consumer of the package's public API, compiled with
// module/moduleResolution node16 and @types/node, as the README says. It is
// type-checked (tsc --noEmit), not run.
import {
  __HYPERVISOR_grant_table_op,
  DecodeError,
  DOMID_SELF,
  decodeGrantFrames,
  decodeStruct,
  encodeStruct,
  GNTTABOP_query_size,
  Gnttab,
  type GuestContext,
  GuestCrash,
  type GuestOutcome,
  gnttab_query_size,
  Host,
  snapshotTables,
  type TableSnapshot,
  WorkerHost,
} from 'gnttab';

export async function querySize(host: Host): Promise<number> {
  const d = host.createDomain({ kind: 'pv', memoryKiB: 1024 });
  const arg = d.ramBytes - 4096;
  d.memory.write(arg, encodeStruct(gnttab_query_size, { dom: DOMID_SELF }));
  const rc: number = d.hypercall(__HYPERVISOR_grant_table_op, GNTTABOP_query_size, arg, 1);
  const out = decodeStruct(gnttab_query_size, d.memory.read(arg, 16));
  return rc === 0 ? out.max_nr_frames : rc;
}

export async function grantInOneThread(): Promise<GuestOutcome[]> {
  const host = new Host({ memoryMiB: 16, xenstore: true });
  const back = host.createDomain({ kind: 'pv' });
  const front = host.createDomain({ kind: 'hvm' });
  const main = (ctx: GuestContext): number => {
    const gt = new Gnttab(ctx, { version: 1 });
    gt.init();
    return gt.grantForeignAccess(back.domid, gt.pages.gfnOf(gt.pages.alloc()), true);
  };
  const tables: TableSnapshot[] = snapshotTables(host.hypervisor);
  void tables;
  return host.runGuests([{ domid: front.domid, main }]);
}

export async function inWorkers(guest: URL): Promise<string[]> {
  const wh = await WorkerHost.start({ memoryMiB: 16 });
  try {
    const d = await wh.createDomain({ kind: 'pv' });
    await wh.spawn(d, guest, { peer: 0 });
    return await wh.checkInvariants();
  } catch (e) {
    if (e instanceof GuestCrash) return [`d${e.domid} crashed`];
    throw e;
  } finally {
    await wh.shutdown();
  }
}

export function decode(bytes: Uint8Array): number {
  try {
    return decodeGrantFrames(bytes, { layout: 1 }).length;
  } catch (e) {
    if (e instanceof DecodeError) return -1;
    throw e;
  }
}
