// The unmap-notification protocol shared by gntalloc and gntdev
// (guest-side.md §5.5): when a side's mapping of the main shared page goes
// away (unshare, unmap, close), the kernel zeroes one nominated byte of it
// and/or signals one nominated event channel, so the peer learns that this
// side is gone. 0 means "closed".

export const UNMAP_NOTIFY_CLEAR_BYTE = 0x1;
export const UNMAP_NOTIFY_SEND_EVENT = 0x2;

/** Signals an event channel port (notify_remote_via_evtchn); supplied by the event-channel client. */
export type NotifyPort = (port: number) => void;

export interface UnmapNotify {
  /** UNMAP_NOTIFY_* bits still to act on. */
  flags: number;
  /** gntalloc: offset in the page (12 bits); gntdev: byte offset in the whole mapping. */
  offset: number;
  /** The event channel port to signal. */
  port: number;
}

/**
 * The SET_UNMAP_NOTIFY request libxengnttab and libxengntshr derive from a
 * notify offset and port (linux.c): the byte is cleared only when its offset
 * lies inside the `bytes` of the mapping, and an event is sent unless the port
 * is -1 (or its unsigned form).
 */
export function notifyRequest(
  notifyOffset: number,
  notifyPort: number,
  bytes: number,
): { action: number; offset: number } {
  let action = 0;
  let offset = 0;
  if (notifyOffset >= 0 && notifyOffset < bytes) {
    action |= UNMAP_NOTIFY_CLEAR_BYTE;
    offset = notifyOffset;
  }
  if (notifyPort !== -1 && notifyPort !== 0xffff_ffff) action |= UNMAP_NOTIFY_SEND_EVENT;
  return { action, offset };
}

export function noNotify(): UnmapNotify {
  return { flags: 0, offset: 0, port: 0 };
}

/** Validates a SET_UNMAP_NOTIFY action: 0, or -EINVAL for unknown bits or an event with no way to send it. */
export function checkNotifyAction(action: number, notify: NotifyPort | null): boolean {
  if ((action & ~(UNMAP_NOTIFY_CLEAR_BYTE | UNMAP_NOTIFY_SEND_EVENT)) !== 0) return false;
  if ((action & UNMAP_NOTIFY_SEND_EVENT) !== 0 && notify === null) return false;
  return true;
}
