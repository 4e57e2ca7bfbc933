// The vchan echo example's client (the backend under `gnttab run`): connects
// to the server's vchan once it is published (libxenvchan_client_init maps
// the ring pages and binds the event channel), sends the lines, reads them
// back and checks them, then closes.
import { connectVchanServices, type GuestContext, type RunGuestArgs, Vchan, XenError } from 'gnttab';
import { echoPath, messages } from './messages.ts';

export default async function client(ctx: GuestContext, args: RunGuestArgs): Promise<{ lines: number }> {
  const sent = messages(args.argv);
  const svc = connectVchanServices(ctx);
  let v: Vchan | null = null;
  for (let tries = 0; v === null; tries++) {
    try {
      v = await Vchan.clientInit(svc, args.peer, echoPath(args.peer));
    } catch (e) {
      // ENOENT: the server has not published its keys yet.
      if (!(e instanceof XenError) || e.code !== 'ENOENT' || tries > 2000) throw e;
      await ctx.clock.sleep(5);
    }
  }
  v.blocking = true;
  if ((await v.write(sent)) !== sent.length) throw new Error('vchan write failed');
  const back = new Uint8Array(sent.length);
  for (let got = 0; got < back.length; ) {
    const n = await v.read(back.subarray(got));
    if (n <= 0) throw new Error(`vchan read returned ${n} after ${got} bytes`);
    got += n;
  }
  const text = new TextDecoder().decode(back);
  if (text !== new TextDecoder().decode(sent)) throw new Error('the echo differs from what was sent');
  const lines = text.split('\n').length - 1;
  ctx.log(`${lines} lines came back as sent; the last: ${JSON.stringify(text.split('\n').at(-2))}`);
  await v.close();
  await svc.xs.close();
  return { lines };
}
