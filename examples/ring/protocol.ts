// The ring example's protocol, shared by its frontend and backend: one page of
// ring.h ring, requests asking the backend to add two numbers, and the xenbus
// layout of the handshake (the frontend's keys under device/, the backend's
// under backend/, each side's `state` stepping through XenbusState).
import type { RingLayout, XsClient } from 'gnttab';

/** struct req { u32 id; u32 a; u32 b; }  struct rsp { u32 id; u32 sum; } (union: 12 bytes). */
export const layout: RingLayout = { entrySize: 12, requestSize: 12, responseSize: 8 };

export function encodeRequest(id: number, a: number, b: number): Uint8Array {
  const out = new Uint8Array(12);
  const v = new DataView(out.buffer);
  v.setUint32(0, id, true);
  v.setUint32(4, a, true);
  v.setUint32(8, b, true);
  return out;
}

export function decodeRequest(bytes: Uint8Array): { id: number; a: number; b: number } {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { id: v.getUint32(0, true), a: v.getUint32(4, true), b: v.getUint32(8, true) };
}

export function encodeResponse(id: number, sum: number): Uint8Array {
  const out = new Uint8Array(8);
  const v = new DataView(out.buffer);
  v.setUint32(0, id, true);
  v.setUint32(4, sum >>> 0, true);
  return out;
}

export function decodeResponse(bytes: Uint8Array): { id: number; sum: number } {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { id: v.getUint32(0, true), sum: v.getUint32(4, true) };
}

/** XenbusState (xen/include/public/io/xenbus.h), the steps this example uses. */
export const XenbusStateInitialised = 3;
export const XenbusStateConnected = 4;
export const XenbusStateClosing = 5;
export const XenbusStateClosed = 6;

export const frontendPath = (front: number) => `/local/domain/${front}/device/adder/0`;
export const backendPath = (back: number, front: number) => `/local/domain/${back}/backend/adder/${front}/0`;

/**
 * Waits, asleep, until the key at `path` satisfies `ok` (a missing key reads
 * as null): a xenstore watch marks the key changed, and `sleep` (the domain's
 * EventWaiter) runs event handlers, the xenstore ring's among them, until it has.
 */
export async function waitForKey(
  xs: XsClient,
  sleep: (ready: () => boolean) => Promise<void>,
  path: string,
  ok: (value: string | null) => boolean,
): Promise<string | null> {
  let changed = false;
  const token = `wait-${path}`;
  await xs.watch(path, token, () => {
    changed = true;
  });
  try {
    for (;;) {
      changed = false;
      const value = await xs.read(path).catch(() => null);
      if (ok(value)) return value;
      await sleep(() => changed);
    }
  } finally {
    await xs.unwatch(path, token);
  }
}

/** Removes `path` and then each parent up to (not including) `top` that it left empty. */
export async function removeUp(xs: XsClient, path: string, top: string): Promise<void> {
  await xs.rm(path);
  for (
    let p = path.slice(0, path.lastIndexOf('/'));
    p.length > top.length;
    p = p.slice(0, p.lastIndexOf('/'))
  ) {
    const left = await xs.directory(p).catch(() => null);
    if (left === null || left.length > 0) break;
    await xs.rm(p);
  }
}
