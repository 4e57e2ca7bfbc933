// A worker host from the installed package running a guest written in
// TypeScript (guest.ts): on Node 20 too, where Node cannot strip types.
import { WorkerHost } from 'gnttab';

const wh = await WorkerHost.start({ memoryMiB: 16 });
try {
  const back = await wh.createDomain({ kind: 'pv', memoryKiB: 1024 });
  const front = await wh.createDomain({ kind: 'hvm', memoryKiB: 1024 });
  const result = await wh.spawn(front, new URL('./guest.ts', import.meta.url), { peer: back.domid });
  const invariants = await wh.checkInvariants();
  const ok = result?.ended === true && result.ref >= 8 && invariants.length === 0;
  console.log(
    `${ok ? 'ok' : 'FAILED'}: .ts guest returned ${JSON.stringify(result)}, invariants ${JSON.stringify(invariants)}`,
  );
  console.log(`  console of d${front.domid}: ${wh.consoleOf(front.domid).join(' / ')}`);
  if (!ok) process.exitCode = 1;
} finally {
  await wh.shutdown();
}
