// Permissions of a node (xenstore_lib.h): entries, their string form, and
// how xenstored reads a domain id.
import type { XsConnection } from './connection.ts';

export const XS_PERM_NONE = 0;
export const XS_PERM_READ = 1;
export const XS_PERM_WRITE = 2;
export const XS_PERM_OWNER = 8;
export const XS_PERM_ALL = XS_PERM_READ | XS_PERM_WRITE | XS_PERM_OWNER;

/** DOMID_SELF: XS_IS_DOMAIN_INTRODUCED answers "T" for it. */
export const DOMID_SELF = 0x7ff0;

/** One permission entry. `ignore`: it names a domain that did not exist when it was set (XS_PERM_IGNORE). */
export interface XsPermEntry {
  readonly id: number;
  readonly perms: number;
  readonly ignore?: boolean;
}

/** xenstore_perm_to_string. */
export function permToString(p: XsPermEntry): string {
  const c = p.perms === XS_PERM_READ ? 'r' : p.perms === XS_PERM_WRITE ? 'w' : p.perms === 3 ? 'b' : 'n';
  return `${c}${p.id}`;
}

/** xenstore_strings_to_perms: "r3", "w0", "b5", "n1" (the id in C's strtol base 0); null when malformed. */
export function parsePerm(s: string): XsPermEntry | null {
  const c = s[0];
  const perms =
    c === 'r'
      ? XS_PERM_READ
      : c === 'w'
        ? XS_PERM_WRITE
        : c === 'b'
          ? XS_PERM_READ | XS_PERM_WRITE
          : c === 'n'
            ? XS_PERM_NONE
            : -1;
  if (perms < 0) return null;
  const num = s.slice(1);
  const m = /^[ \t\n\v\f\r]*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.exec(num);
  if (m === null) return null;
  const digits = m[2]!;
  let v: number;
  if (/^0[xX]/.test(digits)) v = Number.parseInt(digits.slice(2), 16);
  else if (digits.length > 1 && digits[0] === '0') v = Number.parseInt(digits, 8);
  else v = Number.parseInt(digits, 10);
  if (m[1] === '-') v = -v;
  // struct xs_permissions.id is an unsigned int.
  return { id: v >>> 0, perms };
}

/** C's atoi, as xenstored reads domain ids: leading blanks, a sign, digits; 0 when none. */
export function atoi(s: string): number {
  const m = /^[ \t\n\v\f\r]*([+-]?\d+)/.exec(s);
  if (m === null) return 0;
  return Number.parseInt(m[1]!, 10) | 0;
}

/** perm_for_conn. */
export function permFor(conn: XsConnection, perms: readonly XsPermEntry[]): number {
  if (!conn.unprivileged || perms[0]!.id === conn.domid) return XS_PERM_ALL;
  for (let i = 1; i < perms.length; i++) {
    const e = perms[i]!;
    if (e.ignore !== true && e.id === conn.domid) return e.perms & XS_PERM_ALL;
  }
  return perms[0]!.perms & XS_PERM_ALL;
}
