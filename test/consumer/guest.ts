// A guest program in TypeScript, as a user of the installed package writes it:
// the default export (ctx, args) runs in its domain's worker thread. It grants
// a page to its peer, checks the entry, and ends access again.
import { Gnttab, type GuestContext } from 'gnttab';

export interface GuestArgs {
  peer: number;
}

export default async function main(
  ctx: GuestContext,
  args: GuestArgs,
): Promise<{ ref: number; ended: boolean }> {
  const gt = new Gnttab(ctx, { version: 2 });
  if (gt.init() !== 0) throw new Error('grant table setup failed');
  const page = gt.pages.alloc();
  const ref = gt.grantForeignAccess(args.peer, gt.pages.gfnOf(page), false);
  ctx.log(`granted ref ${ref} to d${args.peer}`);
  const ended = gt.tryEndForeignAccess(ref);
  gt.pages.put(page);
  return { ref, ended };
}
