// What libxenvchan needs from the domain it runs in: the devices a Linux
// process would open (gntalloc for the server, gntdev for the client, evtchn
// for both) and a xenstore connection. A domain has exactly one of each
// kernel-side object (one page allocator, one grant table, one event-channel
// client: two of them would hand out the same pages or re-mask each other's
// ports), so every vchan of a domain shares one VchanServices.
import type { GuestContext } from '../../guest/context.ts';
import { EventChannels, EventWaiter } from '../../guest/events.ts';
import { Gntalloc } from '../../guest/gnttab/gntalloc.ts';
import { Gntdev } from '../../guest/gnttab/gntdev.ts';
import { Gnttab, type GnttabOptions } from '../../guest/gnttab/grant-table.ts';
import { PageAllocator } from '../../guest/pages.ts';
import type { Spinner } from '../../machine/wait-policy.ts';
import type { XsClient } from '../xenstore/api.ts';
import { XsRingClient } from '../xenstore/client.ts';

export { EventWaiter };

/** The kernel-side objects of one domain that its vchans share (see openVchanServices). */
export interface VchanServices {
  readonly ctx: GuestContext;
  readonly pages: PageAllocator;
  readonly gnttab: Gnttab;
  readonly events: EventChannels;
  readonly waiter: EventWaiter;
  /** The server's device (xengntshr): its unmap notification signals through `events`. */
  readonly gntalloc: Gntalloc;
  /** The client's device (xengnttab): its unmap notification signals through `events`. */
  readonly gntdev: Gntdev;
  readonly xs: XsClient;
  /** How a blocking call spins on the ring before it sleeps; null: it never spins. */
  readonly spinner: Spinner | null;
}

/** Options of openVchanServices and connectVchanServices. */
export interface VchanServicesOptions {
  /** Already built kernel objects of this domain, to share instead of making new ones. */
  pages?: PageAllocator;
  gnttab?: Gnttab;
  events?: EventChannels;
  /**
   * The domain's one waiter on its events, when other code of the domain
   * sleeps on them too (the xenstore client's `until` option takes
   * `(ready) => waiter.until(ready)`). Default: a new one over `events`.
   */
  waiter?: EventWaiter;
  /** Options for a new grant-table driver (version, ...). */
  gnttabOptions?: Omit<GnttabOptions, 'pages'>;
  /** The wait policy's spinner (default: the context's, if it has one). */
  spinner?: Spinner;
}

/**
 * The domain's vchan services: builds (or adopts) the page allocator, the
 * grant-table driver (initialised here when new), the event-channel client,
 * gntalloc and gntdev with unmap notifications wired to EVTCHNOP_send.
 */
export function openVchanServices(
  ctx: GuestContext,
  xs: XsClient,
  o: VchanServicesOptions = {},
): VchanServices {
  const pages = o.pages ?? o.gnttab?.pages ?? new PageAllocator(ctx);
  let gnttab = o.gnttab;
  if (gnttab === undefined) {
    gnttab = new Gnttab(ctx, { ...(o.gnttabOptions ?? {}), pages });
    const rc = gnttab.init();
    if (rc !== 0) throw new Error(`d${ctx.start.domid}: grant table init failed (${rc})`);
  }
  const events = o.events ?? o.waiter?.events ?? EventChannels.open(ctx);
  if (o.waiter !== undefined && o.waiter.events !== events)
    throw new Error('the waiter must sleep on the same EventChannels as the services');
  const notify = (port: number) => {
    const rc = events.send(port);
    if (rc !== 0) ctx.log(`vchan: unmap notification on port ${port} failed (${rc})`);
  };
  return {
    ctx,
    pages,
    gnttab,
    events,
    waiter: o.waiter ?? new EventWaiter(events),
    gntalloc: new Gntalloc(gnttab, { notify }),
    gntdev: new Gntdev(ctx, pages, { notify }),
    xs,
    spinner: o.spinner ?? ctx.spinner ?? null,
  };
}

/**
 * The vchan services of a domain that reaches the host's xenstore through its
 * own ring page and event channel (StartInfo.storeFrame / storePort): one
 * EventChannels and one EventWaiter, shared by the xenstore client (as its
 * `until`) and every vchan of the domain.
 */
export function connectVchanServices(
  ctx: GuestContext,
  o: Omit<VchanServicesOptions, 'waiter'> = {},
): VchanServices & { readonly xs: XsRingClient } {
  const events = o.events ?? EventChannels.open(ctx);
  const waiter = new EventWaiter(events);
  const xs = XsRingClient.open(ctx, { events, until: (ready, signal) => waiter.until(ready, signal) });
  return { ...openVchanServices(ctx, xs, { ...o, events, waiter }), xs };
}
