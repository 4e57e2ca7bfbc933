// The page-share example's sharer (the frontend under `gnttab run`): shares
// one page with xengntshr_share_page_notify, publishes its grant ref and an
// event channel in xenstore, and waits for the mapper's reply and then for
// the mapper's unmap notification (its flag byte cleared, the port kicked)
// before it unshares, which in turn notifies the mapper.
//   gnttab run examples/page-share/sharer.ts examples/page-share/mapper.ts
import { connectVchanServices, type GuestContext, type RunGuestArgs, Xengntshr } from 'gnttab';
import {
  GREETING,
  getString,
  MAPPER_ALIVE,
  putString,
  REPLY,
  REPLY_READ,
  SHARER_ALIVE,
  sharePath,
} from './layout.ts';

export default async function sharer(ctx: GuestContext, args: RunGuestArgs): Promise<{ reply: string }> {
  const { gntalloc, gnttab, events, waiter, xs } = connectVchanServices(ctx);
  const port = events.allocUnbound(args.peer);
  if (port < 0) throw new Error(`alloc_unbound failed (${port})`);
  events.bind(port, () => {});
  using gntshr = Xengntshr.open(gntalloc);
  const share = gntshr.sharePageNotify(args.peer, true, SHARER_ALIVE, port);
  const byteAt = (off: number) => ctx.mem.read(share.addr + off, 1)[0];

  const page = new Uint8Array(4096);
  page[SHARER_ALIVE] = 1;
  putString(page, GREETING, `hello from d${args.self}`);
  ctx.mem.write(share.addr, page);
  await xs.write(`${sharePath(args.self)}/ref`, String(share.refs[0]));
  await xs.write(`${sharePath(args.self)}/port`, String(port));
  ctx.log(`shared ref ${share.refs[0]} with d${args.peer}, port ${port}`);

  // The mapper sets its flag with its reply; once told the reply was read, it
  // unmaps, and its unmap notification clears the flag again.
  await waiter.until(() => byteAt(MAPPER_ALIVE) === 1);
  const reply = getString(ctx.mem.read(share.addr, 4096), REPLY);
  ctx.log(`the mapper replied ${JSON.stringify(reply)}`);
  ctx.mem.write(share.addr + REPLY_READ, new Uint8Array([1]));
  events.send(port);
  await waiter.until(() => byteAt(MAPPER_ALIVE) === 0);
  ctx.log('unmap notification: the mapper has let go of the page');

  // Unsharing signals the port and ends access. The mapper's byte is cleared
  // before its unmap hypercall (as gntdev's __unmap_grant_pages does), so the
  // page may still be mapped for a moment: then the end of access is deferred,
  // and the grant driver retries it every second. Wait that out before the
  // domain goes.
  share.unshare();
  for (let i = 0; i < 100 && gnttab.deferredCount > 0; i++) await ctx.clock.sleep(100);
  if (gnttab.deferredCount > 0) throw new Error('the mapper still maps the page 10 s after unsharing');
  events.unbind(port);
  events.close(port);
  await xs.rm(sharePath(args.self));
  await xs.close();
  return { reply };
}
