// The shared page of the page-share example: two flag bytes the unmap
// notifications clear, and two messages.
export const MAPPER_ALIVE = 0; // set by the mapper; its unmap notification clears it
export const SHARER_ALIVE = 1; // set by the sharer; its unshare notification clears it
export const REPLY_READ = 2; // set by the sharer once it has read the reply: the mapper may unmap
export const GREETING = 64; // the sharer's message, NUL-terminated
export const REPLY = 2048; // the mapper's reply, NUL-terminated

export const sharePath = (sharer: number) => `/local/domain/${sharer}/data/page-share`;

export function putString(bytes: Uint8Array, at: number, s: string): void {
  const enc = new TextEncoder().encode(`${s}\0`);
  bytes.set(enc, at);
}

export function getString(bytes: Uint8Array, at: number): string {
  const end = bytes.indexOf(0, at);
  return new TextDecoder().decode(bytes.subarray(at, end < 0 ? bytes.length : end));
}
