// The page-share example's mapper (the backend under `gnttab run`): maps the
// sharer's page with xengnttab_map_grant_ref_notify (unmapping clears its flag
// byte and signals the port), reads the greeting, writes a reply, unmaps, and
// waits for the sharer's own notification that it unshared.
import { connectVchanServices, type GuestContext, type RunGuestArgs, Xengnttab } from 'gnttab';
import { GREETING, getString, MAPPER_ALIVE, putString, REPLY, REPLY_READ, sharePath } from './layout.ts';

export default async function mapper(ctx: GuestContext, args: RunGuestArgs): Promise<{ greeting: string }> {
  const { gntdev, events, waiter, xs } = connectVchanServices(ctx);
  // The sharer's keys, once it has published them.
  let ref = Number.NaN;
  let remotePort = Number.NaN;
  for (let tries = 0; Number.isNaN(remotePort); tries++) {
    try {
      ref = Number(await xs.read(`${sharePath(args.peer)}/ref`));
      remotePort = Number(await xs.read(`${sharePath(args.peer)}/port`));
    } catch (e) {
      if (tries > 2000) throw e;
      await ctx.clock.sleep(5);
    }
  }
  const port = events.bindInterdomain(args.peer, remotePort);
  if (port < 0) throw new Error(`bind_interdomain failed (${port})`);
  // The sharer signals twice: once it has read the reply, and when it unshares.
  let kicked = false;
  events.bind(port, () => {
    kicked = true;
  });

  using gnttab = Xengnttab.open(gntdev);
  const mapping = await gnttab.mapGrantRefNotify(args.peer, ref, true, MAPPER_ALIVE, port);
  const greeting = getString(ctx.mem.read(mapping.addr, 4096), GREETING);
  ctx.log(`mapped ref ${ref} of d${args.peer}: ${JSON.stringify(greeting)}`);
  const reply = new Uint8Array(64);
  putString(reply, 0, `hello back from d${args.self}`);
  ctx.mem.write(mapping.addr + REPLY, reply);
  ctx.mem.write(mapping.addr + MAPPER_ALIVE, new Uint8Array([1])); // the flag last
  events.send(port);
  await waiter.until(() => kicked && ctx.mem.read(mapping.addr + REPLY_READ, 1)[0] === 1);

  // Unmapping clears MAPPER_ALIVE through the mapping and signals the sharer;
  // the next kick is the sharer's unshare notification.
  kicked = false;
  mapping.unmap();
  await waiter.until(() => kicked);
  ctx.log('the sharer unshared the page');
  events.unbind(port);
  events.close(port);
  await xs.close();
  return { greeting };
}
