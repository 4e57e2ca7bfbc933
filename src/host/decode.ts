// Decoding a binary dump of grant frames (as a toolstack or a debugger reads
// them out of memory): v1 entries, or v2 entries with an optional dump of the
// status frames. Only valid entries are reported; input that cannot be a grant
// table (a size that is not whole frames, bits no layout defines) is refused
// with an error saying what and where.
import {
  GTF_accept_transfer,
  GTF_PAT,
  GTF_PCD,
  GTF_PWT,
  GTF_permit_access,
  GTF_reading,
  GTF_readonly,
  GTF_sub_page,
  GTF_transitive,
  GTF_type_mask,
  GTF_writing,
} from '../abi/flags.ts';
import { GRANT_ENTRY_V1_SIZE, GRANT_ENTRY_V2_SIZE, XEN_PAGE_SIZE } from '../abi/limits.ts';
import { flagNames } from './snapshot.ts';

/** A dump that cannot be decoded: the message says where and why. */
export class DecodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DecodeError';
  }
}

/** One grant entry of a decoded dump: its ref, flags and what it grants to whom. */
export interface DecodedEntry {
  ref: number;
  type: 'permit_access' | 'accept_transfer' | 'transitive';
  flags: number;
  flagNames: string[];
  domid: number;
  /** permit_access / accept_transfer: the frame. */
  frame?: number;
  subPage?: { offset: number; length: number };
  transitive?: { domid: number; gref: number };
  /** GTF_reading / GTF_writing as found (v1 flags; v2 status word), by name. */
  status: string[];
}

export interface DecodeOptions {
  layout: 1 | 2;
  /** v2: the status frames' bytes. */
  status?: Uint8Array;
}

/** Every flag bit some entry type can carry (bits 0-8). */
const KNOWN_FLAGS =
  GTF_type_mask | GTF_readonly | GTF_reading | GTF_writing | GTF_PWT | GTF_PCD | GTF_PAT | GTF_sub_page;

function checkFrames(bytes: Uint8Array, what: string): void {
  if (bytes.length === 0 || bytes.length % XEN_PAGE_SIZE !== 0) {
    throw new DecodeError(
      `${what} is ${bytes.length} bytes: a dump of grant frames is a whole number of 4096-byte frames (and at least one)`,
    );
  }
}

/** Decodes raw grant frames (v1 or v2, as options say) into their entries in use. */
export function decodeGrantFrames(bytes: Uint8Array, o: DecodeOptions): DecodedEntry[] {
  checkFrames(bytes, 'the grant-frame dump');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const size = o.layout === 1 ? GRANT_ENTRY_V1_SIZE : GRANT_ENTRY_V2_SIZE;
  const n = bytes.length / size;
  let st: DataView | null = null;
  if (o.status !== undefined) {
    if (o.layout !== 2)
      throw new DecodeError(
        'a status dump only goes with layout 2 (v1 keeps GTF_reading/GTF_writing in the entries)',
      );
    checkFrames(o.status, 'the status dump');
    if (o.status.length / 2 < n) {
      throw new DecodeError(
        `the status dump covers ${o.status.length / 2} entries, the grant frames hold ${n}: it is too short`,
      );
    }
    st = new DataView(o.status.buffer, o.status.byteOffset, o.status.byteLength);
  }
  const out: DecodedEntry[] = [];
  for (let ref = 0; ref < n; ref++) {
    const at = ref * size;
    const flags = view.getUint16(at, true);
    const status =
      o.layout === 1 ? flags & (GTF_reading | GTF_writing) : st === null ? 0 : st.getUint16(ref * 2, true);
    if (o.layout === 2 && (status & ~(GTF_reading | GTF_writing)) !== 0) {
      throw new DecodeError(
        `ref ${ref}: status word 0x${status.toString(16)} has bits other than GTF_reading (0x8) and GTF_writing (0x10)`,
      );
    }
    const type = flags & GTF_type_mask;
    if (type === 0 && status === 0) continue;
    if ((flags & ~KNOWN_FLAGS) !== 0) {
      throw new DecodeError(
        `ref ${ref}: flags 0x${flags.toString(16)} have bits no grant layout defines (0x${(flags & ~KNOWN_FLAGS).toString(16)})`,
      );
    }
    if (o.layout === 1 && type === GTF_transitive) {
      throw new DecodeError(
        `ref ${ref}: GTF_transitive (type 3) does not exist in layout v1; is this a v2 dump (--layout 2)?`,
      );
    }
    if (o.layout === 2 && (flags & (GTF_reading | GTF_writing)) !== 0 && type !== GTF_accept_transfer) {
      throw new DecodeError(
        `ref ${ref}: GTF_reading/GTF_writing in a v2 header (they live in the status frames); is this a v1 dump (--layout 1)?`,
      );
    }
    const e: DecodedEntry = {
      ref,
      type:
        type === GTF_permit_access
          ? 'permit_access'
          : type === GTF_accept_transfer
            ? 'accept_transfer'
            : 'transitive',
      flags,
      flagNames: flagNames(flags),
      domid: view.getUint16(at + 2, true),
      status: [status & GTF_reading ? 'reading' : '', status & GTF_writing ? 'writing' : ''].filter(Boolean),
    };
    if (type === 0) e.type = 'permit_access';
    if (o.layout === 1) e.frame = view.getUint32(at + 4, true);
    else if (type === GTF_transitive)
      e.transitive = { domid: view.getUint16(at + 4, true), gref: view.getUint32(at + 8, true) };
    else {
      e.frame = view.getUint32(at + 8, true) + view.getUint32(at + 12, true) * 0x1_0000_0000;
      if (type === GTF_permit_access && (flags & GTF_sub_page) !== 0) {
        e.subPage = { offset: view.getUint16(at + 4, true), length: view.getUint16(at + 6, true) };
      }
    }
    out.push(e);
  }
  return out;
}
