// Grant-table entries as they lie in the shared frames (reference §3.1).
import { defineStruct } from './struct.ts';

/** struct grant_entry_v1: 8 bytes. */
export const grant_entry_v1 = defineStruct('grant_entry_v1', 8, {
  flags: [0, 'u16'],
  domid: [2, 'u16'],
  frame: [4, 'u32'],
});

/** struct grant_entry_header: 4 bytes, the first word of a v2 entry. */
export const grant_entry_header = defineStruct('grant_entry_header', 4, {
  flags: [0, 'u16'],
  domid: [2, 'u16'],
});

/** union grant_entry_v2, full_page variant: 16 bytes. */
export const grant_entry_v2_full_page = defineStruct('grant_entry_v2.full_page', 16, {
  flags: [0, 'u16'],
  domid: [2, 'u16'],
  pad0: [4, 'u32'],
  frame: [8, 'u64'],
});

/** union grant_entry_v2, sub_page variant. */
export const grant_entry_v2_sub_page = defineStruct('grant_entry_v2.sub_page', 16, {
  flags: [0, 'u16'],
  domid: [2, 'u16'],
  page_off: [4, 'u16'],
  length: [6, 'u16'],
  frame: [8, 'u64'],
});

/** union grant_entry_v2, transitive variant. */
export const grant_entry_v2_transitive = defineStruct('grant_entry_v2.transitive', 16, {
  flags: [0, 'u16'],
  domid: [2, 'u16'],
  trans_domid: [4, 'u16'],
  pad0: [6, 'u16'],
  gref: [8, 'u32'],
});

/** grant_status_t: one u16 per entry in the v2 status frames. */
export const GRANT_STATUS_T_SIZE = 2;
