// The adversary's guest program: one side of a split driver, playing foul,
// in its own domain (a worker thread under WorkerHost). Seeded; every move is
// a line on its console (log.ts). It dies when its seed says (AttackerDeath,
// so the host destroys its domain mid-connection) or when the runner kills it.
import type { GuestContext } from '../../guest/context.ts';
import { attackAsBackend } from './backend.ts';
import { attackAsFrontend } from './frontend.ts';
import { type AttackerArgs, Peer } from './peer.ts';

export default async function attacker(ctx: GuestContext, a: AttackerArgs): Promise<never> {
  const p = new Peer(ctx, a);
  p.log(
    'start',
    `d${ctx.start.domid} as ${a.role} of d${a.peer} over ${a.protocol}, seed ${a.seed}, grant table v${a.gnttabVersion}`,
  );
  if (a.role === 'frontend') await attackAsFrontend(p);
  else await attackAsBackend(p);
  throw new Error('unreachable: the attack loops until the attacker dies');
}
