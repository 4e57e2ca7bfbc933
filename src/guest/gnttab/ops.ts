// struct gnttab_ops: what differs between grant-table layout v1 and v2
// (guest-side.md §3.4). Two implementations: ops-v1.ts and ops-v2.ts. Every
// access to a word Xen also touches goes through ctx.mem's atomics, in the
// order Linux uses (xen-grant-tables.md §14).

export interface GnttabOps {
  readonly version: 1 | 2;
  /** Entries per 4 KiB grant frame: 512 (v1) or 256 (v2). */
  readonly grefsPerGrantFrame: number;
  /** Status frames that cover `nrGrantFrames` grant frames (v1: none). */
  nrStatusFrames(nrGrantFrames: number): number;
  /**
   * PV: map the shared frames Xen returned from setup_table at GNTTAB_SHARED_VA
   * (v2: first get_status_frames and map those at GNTTAB_STATUS_VA). 0 or -errno.
   */
  mapFrames(frames: readonly number[]): number;
  /** PV: unmap what mapFrames mapped for `nrGrantFrames` grant frames. */
  unmapFrames(nrGrantFrames: number): void;
  /** Writes an entry: domid, then frame, then (a barrier and) flags last, as given. */
  updateEntry(ref: number, domid: number, frame: number, flags: number): void;
  /** Revokes an access entry: true when done, false while Xen still has it pinned. */
  endForeignAccessRef(ref: number): boolean;
  /** Reclaims an accept_transfer entry: 0 if no transfer happened, else the frame received. */
  endForeignTransferRef(ref: number): number;
  /** The frame field of a full-page entry. */
  readFrame(ref: number): number;
  /** GTF_reading | GTF_writing as Xen shows them for ref (the removed query_foreign_access). */
  query(ref: number): number;
  /** v2 only: a sub-page grant (null in v1). */
  readonly updateSubpageEntry:
    | ((ref: number, domid: number, frame: number, flags: number, pageOff: number, length: number) => void)
    | null;
  /** v2 only: a transitive grant (null in v1). */
  readonly updateTransEntry:
    | ((ref: number, domid: number, flags: number, transDomid: number, transGref: number) => void)
    | null;
}
