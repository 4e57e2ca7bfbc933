// A frontend with a racy revoke, for `gnttab explore`: it ends access to a
// v1 grant by reading the flags and, when Xen shows no mapping, storing 0.
// Linux uses a compare-exchange instead, because between the read and the
// store the backend's map can set GTF_reading/GTF_writing; the plain store
// then wipes them, the frontend believes the page is its own again while the
// backend still maps it, and the backend reads what the frontend writes next.
//
//   gnttab explore examples/racy-revoke/scenario.ts
import { defineScenario, GTF_reading, GTF_writing, layout, revokeScenario } from 'gnttab';

const racyRevoke = revokeScenario((gt, ref) => {
  const flags = gt.ctx.mem.load16(layout.GNTTAB_SHARED_VA + ref * 8);
  if ((flags & (GTF_reading | GTF_writing)) !== 0) return false;
  gt.ctx.mem.store16(layout.GNTTAB_SHARED_VA + ref * 8, 0); // the bug: Linux CMPXCHGs here
  gt.freeGrantReference(ref);
  return true;
}, 'racy-revoke');

export default defineScenario(racyRevoke);
