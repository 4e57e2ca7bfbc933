// The vchan echo example's server (the frontend under `gnttab run`): offers a
// vchan to its peer (libxenvchan_server_init: it shares the ring pages and an
// event channel, and publishes them in xenstore), echoes every byte it reads,
// and closes once the client has gone.
//   gnttab run examples/vchan-echo/server.ts examples/vchan-echo/client.ts -- 16
import { connectVchanServices, type GuestContext, type RunGuestArgs, Vchan } from 'gnttab';
import { echoPath, messages } from './messages.ts';

export default async function server(ctx: GuestContext, args: RunGuestArgs): Promise<{ echoed: number }> {
  const total = messages(args.argv).length;
  const svc = connectVchanServices(ctx);
  const v = await Vchan.serverInit(svc, args.peer, echoPath(args.self), 4096, 4096);
  v.blocking = true;
  const buf = new Uint8Array(4096);
  let echoed = 0;
  while (echoed < total) {
    const n = await v.read(buf.subarray(0, Math.min(buf.length, total - echoed)));
    if (n <= 0) throw new Error(`vchan read returned ${n} after ${echoed} bytes`);
    if ((await v.write(buf.subarray(0, n))) !== n) throw new Error('vchan write failed');
    echoed += n;
  }
  ctx.log(`echoed ${echoed} bytes`);
  // The client closes first (it unmaps our pages); its close wakes us.
  while (v.isOpen() !== 0) await v.wait();
  await v.close();
  await svc.xs.close();
  return { echoed };
}
