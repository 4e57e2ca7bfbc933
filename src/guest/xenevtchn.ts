// libxenevtchn (Xen tools/libs/evtchn: core.c over linux.c) as a process sees
// it through Linux's /dev/xen/evtchn (drivers/xen/evtchn.c): a handle owns the
// ports it bound; when one fires, the device masks it and queues it, pending()
// hands the queued ports out one at a time, and unmask() lets the port fire
// again. The calls keep the C names in camelCase; where C returns -1 with
// errno, these throw XenError with Xen's (or the device's) errno.
import { EVTCHN_2L_NR_CHANNELS } from '../abi/event-channel.ts';
import { isAborted } from './abort.ts';
import { type EventChannels, EventWaiter } from './events.ts';
import { EAGAIN, EBADF, EINVAL, ENOTCONN } from './gnttab/errno.ts';
import { XenError } from './xen-error.ts';

/** Options of the waits of a Xenevtchn handle. */
export interface XenevtchnWaitOptions {
  /** Rejects the wait with the signal's reason (an AbortError) when it aborts. */
  signal?: AbortSignal;
}

/** Options of Xenevtchn.pending. */
export interface XenevtchnPendingOptions extends XenevtchnWaitOptions {
  /**
   * false: do not sleep; XenError EAGAIN when no port is pending (a read of
   * the device opened O_NONBLOCK). Default true: sleep until one is.
   */
  block?: boolean;
}

/**
 * xenevtchn_open: a handle on the domain's event channels, as one open file
 * of /dev/xen/evtchn. Disposing it (`using xce = Xenevtchn.open(...)`)
 * closes it, which unbinds every port it bound.
 *
 * ```ts
 * using xce = Xenevtchn.open(waiter);
 * const port = xce.bindInterdomain(peer, remotePort);
 * const fired = await xce.pending({ signal });   // masked now
 * xce.unmask(fired);                             // may fire again
 * ```
 */
export class Xenevtchn implements Disposable, AsyncIterable<number> {
  /** The domain's event-channel client the ports are bound through. */
  readonly events: EventChannels;
  private readonly waiter: EventWaiter;
  /** Ports bound by this handle: enabled (unmasked by us) or fired and not yet unmasked. */
  private readonly bound = new Map<number, { enabled: boolean }>();
  /** The device's ring of fired ports, oldest first. */
  private readonly ring: number[] = [];
  private readonly closing = new AbortController();

  private constructor(from: EventChannels | EventWaiter) {
    if (from instanceof EventWaiter) {
      this.events = from.events;
      this.waiter = from;
    } else {
      this.events = from;
      this.waiter = new EventWaiter(from);
    }
  }

  /**
   * xenevtchn_open over the domain's event-channel client. Give the domain's
   * EventWaiter when other code of the domain also sleeps on its events (the
   * xenstore client, vchan): at most one wait may be in flight per domain.
   */
  static open(from: EventChannels | EventWaiter): Xenevtchn {
    return new Xenevtchn(from);
  }

  private checkOpen(op: string): void {
    if (this.closing.signal.aborted) throw new XenError(op, EBADF, 'the handle is closed');
  }

  /** IOCTL_EVTCHN_*: a port the hypercall gave us becomes ours, enabled (unmasked). */
  private adopt(op: string, rc: number, what: string): number {
    if (rc < 0) throw new XenError(op, rc, what);
    const port = rc;
    const r = this.events.bind(port, (p) => this.fire(p));
    if (r !== 0) {
      this.events.close(port);
      throw new XenError(op, r, `${what}: port ${port} cannot be unmasked`);
    }
    this.bound.set(port, { enabled: true });
    return port;
  }

  /** evtchn_interrupt: the port is masked (disable_irq) and queued for pending(). */
  private fire(port: number): void {
    const b = this.bound.get(port);
    if (b === undefined) return;
    this.events.mask(port);
    if (!b.enabled) return;
    b.enabled = false;
    this.ring.push(port);
  }

  /** xenevtchn_bind_unbound_port: a fresh port of ours that `domid` may bind. */
  bindUnboundPort(domid: number): number {
    const op = 'xenevtchn_bind_unbound_port';
    this.checkOpen(op);
    return this.adopt(op, this.events.allocUnbound(domid), `a port for d${domid}`);
  }

  /** xenevtchn_bind_interdomain: a fresh port of ours connected to `domid`'s `remotePort`. */
  bindInterdomain(domid: number, remotePort: number): number {
    const op = 'xenevtchn_bind_interdomain';
    this.checkOpen(op);
    return this.adopt(op, this.events.bindInterdomain(domid, remotePort), `d${domid} port ${remotePort}`);
  }

  /** xenevtchn_bind_virq: a fresh port for VIRQ `virq` (on vCPU 0, as the device binds it). */
  bindVirq(virq: number): number {
    const op = 'xenevtchn_bind_virq';
    this.checkOpen(op);
    return this.adopt(op, this.events.bindVirq(virq, 0), `VIRQ ${virq}`);
  }

  /** The device's port checks: EINVAL out of range, ENOTCONN when this handle did not bind it. */
  private own(op: string, port: number): void {
    this.checkOpen(op);
    if (!Number.isInteger(port) || port < 0 || port >= EVTCHN_2L_NR_CHANNELS)
      throw new XenError(op, EINVAL, `port ${port} is out of range`);
    if (!this.bound.has(port)) throw new XenError(op, ENOTCONN, `port ${port} is not bound by this handle`);
  }

  /** xenevtchn_notify: signals the other end of `port`. */
  notify(port: number): void {
    const op = 'xenevtchn_notify';
    this.own(op, port);
    const rc = this.events.send(port);
    if (rc < 0) throw new XenError(op, rc, `EVTCHNOP_send on port ${port}`);
  }

  /** xenevtchn_unbind: closes `port` (EVTCHNOP_close); it is no longer this handle's. */
  unbind(port: number): void {
    const op = 'xenevtchn_unbind';
    this.own(op, port);
    this.bound.delete(port);
    const rc = this.events.close(port);
    if (rc < 0) throw new XenError(op, rc, `EVTCHNOP_close on port ${port}`);
  }

  /**
   * xenevtchn_pending: the next port that fired, oldest first; it stays
   * masked until unmask(). Sleeps until one fires (block: false: XenError
   * EAGAIN instead); a signal that aborts rejects with its reason; closing
   * the handle meanwhile rejects with XenError EBADF.
   */
  async pending(options: XenevtchnPendingOptions = {}): Promise<number> {
    const op = 'xenevtchn_pending';
    this.checkOpen(op);
    const take = (): number | undefined => this.ring.shift();
    this.events.poll();
    let port = take();
    if (port !== undefined) return port;
    if (options.block === false) throw new XenError(op, EAGAIN, 'no port is pending');
    const { signal } = options;
    const stop = signal === undefined ? this.closing.signal : AbortSignal.any([signal, this.closing.signal]);
    try {
      await this.waiter.until(() => this.ring.length > 0, stop);
    } catch (e) {
      if (isAborted(signal)) throw signal?.reason;
      if (this.closing.signal.aborted) throw new XenError(op, EBADF, 'the handle was closed while waiting');
      throw e;
    }
    port = take();
    if (port === undefined) throw new XenError(op, EAGAIN, 'no port is pending');
    return port;
  }

  /**
   * xenevtchn_unmask: `port` may fire again (EVTCHNOP_unmask, which re-raises
   * it if it became pending while masked). A port this handle did not bind
   * is ignored, as the device's write() ignores it.
   */
  unmask(port: number): void {
    this.checkOpen('xenevtchn_unmask');
    const b = this.bound.get(port);
    if (b === undefined || b.enabled) return;
    b.enabled = true;
    const rc = this.events.unmask(port);
    if (rc < 0) throw new XenError('xenevtchn_unmask', rc, `EVTCHNOP_unmask on port ${port}`);
  }

  /** Ports bound by this handle, lowest first. */
  get boundPorts(): number[] {
    return [...this.bound.keys()].sort((a, b) => a - b);
  }

  /**
   * The ports as they fire, each unmasked again when the loop asks for the
   * next one: `for await (const port of xce.ports({ signal })) ...`. Ends
   * when the handle closes; a signal that aborts rejects with its reason.
   */
  async *ports(options: XenevtchnWaitOptions = {}): AsyncGenerator<number, void, undefined> {
    for (;;) {
      if (this.closing.signal.aborted) return;
      let port: number;
      try {
        port = await this.pending(options);
      } catch (e) {
        if (e instanceof XenError && e.code === 'EBADF') return;
        throw e;
      }
      yield port;
      if (this.closing.signal.aborted) return;
      this.unmask(port);
    }
  }

  /** `for await (const port of xce)`: ports() without a signal. */
  [Symbol.asyncIterator](): AsyncGenerator<number, void, undefined> {
    return this.ports();
  }

  /** xenevtchn_close: every port of the handle is unbound (closed); waits reject with EBADF. */
  close(): void {
    if (this.closing.signal.aborted) return;
    this.closing.abort();
    for (const port of this.bound.keys()) this.events.close(port);
    this.bound.clear();
    this.ring.length = 0;
  }

  /** `using xce = Xenevtchn.open(...)`: closes the handle. */
  [Symbol.dispose](): void {
    this.close();
  }
}
