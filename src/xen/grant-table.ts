// One domain's grant table (reference §4.1): shared frames (v1 or v2 layout),
// status frames while v2, active entries, the maptrack, and the counters
// set_version needs. Frames are Xen-heap pages in machine memory, owned by
// the domain and shared with it read-write.
import {
  GRANT_ENTRY_V1_SIZE,
  GRANT_ENTRY_V2_SIZE,
  GRANT_PER_FRAME_V1,
  GRANT_PER_FRAME_V2,
  GRANT_STATUS_PER_FRAME,
  statusFramesFor,
  XEN_PAGE_SIZE,
} from '../abi/limits.ts';
import { ActiveEntry } from './active-entry.ts';
import { Maptrack } from './maptrack.ts';

/** No GFN: the frame is not placed in the (HVM) domain's physical map. */
export const NO_GFN = -1;

export class GrantTable {
  version: 1 | 2 = 1;
  readonly maxVersion: 1 | 2;
  readonly maxGrantFrames: number;
  /** MFNs of the shared frames; the length is nr_grant_frames. */
  readonly shared: number[] = [];
  /** MFNs of the status frames (v2 only). */
  readonly status: number[] = [];
  /** Translated domains: the GFN each shared / status frame is placed at, or NO_GFN. */
  readonly sharedGfn: number[] = [];
  readonly statusGfn: number[] = [];
  /** One per possible v1 entry of the current frames. */
  readonly active: ActiveEntry[] = [];
  readonly maptrack: Maptrack;
  /** Sub-page and transitive copy pins, plus transitive acquisitions in flight (XSA-501). */
  nrV2Ops = 0;

  constructor(
    maxVersion: 1 | 2,
    maxGrantFrames: number,
    maxMaptrackFrames: number,
    vcpus: number,
    random: () => number,
  ) {
    this.maxVersion = maxVersion;
    this.maxGrantFrames = maxGrantFrames;
    this.maptrack = new Maptrack(maxMaptrackFrames, vcpus, random);
  }

  get nrGrantFrames(): number {
    return this.shared.length;
  }

  get nrStatusFrames(): number {
    return this.status.length;
  }

  nrGrantEntries(): number {
    return this.shared.length * (this.version === 1 ? GRANT_PER_FRAME_V1 : GRANT_PER_FRAME_V2);
  }

  /** Machine byte address of entry `ref` (its flags/header word). The caller bounds-checks ref. */
  shaAddr(ref: number): number {
    if (this.version === 1) {
      return (
        this.shared[Math.floor(ref / GRANT_PER_FRAME_V1)]! * XEN_PAGE_SIZE +
        (ref % GRANT_PER_FRAME_V1) * GRANT_ENTRY_V1_SIZE
      );
    }
    return (
      this.shared[Math.floor(ref / GRANT_PER_FRAME_V2)]! * XEN_PAGE_SIZE +
      (ref % GRANT_PER_FRAME_V2) * GRANT_ENTRY_V2_SIZE
    );
  }

  /** Machine byte address of the word holding GTF_reading/GTF_writing for `ref`. */
  statusAddr(ref: number): number {
    if (this.version === 1) return this.shaAddr(ref);
    return (
      this.status[Math.floor(ref / GRANT_STATUS_PER_FRAME)]! * XEN_PAGE_SIZE +
      (ref % GRANT_STATUS_PER_FRAME) * 2
    );
  }

  /** Status frames the current number of grant frames needs in v2. */
  statusFramesNeeded(): number {
    return statusFramesFor(this.shared.length);
  }

  activeEntry(ref: number): ActiveEntry {
    let act = this.active[ref];
    if (act === undefined) {
      act = new ActiveEntry();
      this.active[ref] = act;
    }
    return act;
  }
}
