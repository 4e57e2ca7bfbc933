// The advisory catalogue (`gnttab xsa`): every grant-table and event-channel
// advisory of reference/security-advisories.md, each either a runnable
// scenario on a fresh host or marked not applicable with the reason.

import type { XsaEntry, XsaResult, XsaRunOptions } from './types.ts';
import { xsa18 } from './xsa-018.ts';
import { xsa24 } from './xsa-024.ts';
import { xsa26 } from './xsa-026.ts';
import { xsa73 } from './xsa-073.ts';
import { xsa134 } from './xsa-134.ts';
import { xsa155 } from './xsa-155.ts';
import { xsa214 } from './xsa-214.ts';
import { xsa217 } from './xsa-217.ts';
import { xsa218 } from './xsa-218.ts';
import { xsa226 } from './xsa-226.ts';
import { xsa228 } from './xsa-228.ts';
import { xsa230 } from './xsa-230.ts';
import { xsa236 } from './xsa-236.ts';
import { xsa287 } from './xsa-287.ts';
import { xsa295 } from './xsa-295.ts';
import { xsa318 } from './xsa-318.ts';
import { xsa361 } from './xsa-361.ts';
import { xsa362, xsa367 } from './xsa-362.ts';
import { xsa365 } from './xsa-365.ts';
import { xsa379 } from './xsa-379.ts';
import { xsa380 } from './xsa-380.ts';
import { xsa382 } from './xsa-382.ts';
import { xsa384, xsa486 } from './xsa-384.ts';
import { xsa387 } from './xsa-387.ts';
import { xsa394 } from './xsa-394.ts';
import { xsa396 } from './xsa-396.ts';
import { xsa403 } from './xsa-403.ts';
import { xsa411 } from './xsa-411.ts';
import { xsa448 } from './xsa-448.ts';
import { xsa500 } from './xsa-500.ts';
import { xsa501 } from './xsa-501.ts';

export type { XsaCheck, XsaEntry, XsaRace, XsaResult, XsaRunOptions, XsaSide, XsaStep } from './types.ts';

const notApplicable: XsaEntry[] = [
  {
    id: 222,
    year: 2017,
    title: 'unchecked P2M removal (transfer path)',
    op: 'GNTTABOP_transfer',
    side: 'hypervisor',
    notApplicable:
      "needs a P2M removal that fails (superpage split without memory); gnttab's transfer takes pages only from PV senders, whose page-table removal cannot fail",
  },
  {
    id: 268,
    year: 2018,
    title: 'v2 on Arm',
    op: 'GNTTABOP_set_version',
    side: 'hypervisor',
    notApplicable:
      'Arm only: gnttab models x86, where v2 is supported (gnttab=max-ver:1 turns it off, as XSA-486 shows)',
  },
  {
    id: 284,
    year: 2019,
    title: 'transfer on large hosts',
    op: 'GNTTABOP_transfer',
    side: 'hypervisor',
    notApplicable:
      "needs machine frames at or above 2^32 (16 TiB of RAM); gnttab's machine memory is at most 4 GiB",
  },
  {
    id: 371,
    year: 2021,
    title: 'blkback leaked persistent grants (XSA-365 follow-up)',
    op: 'blkback persistent grants',
    side: 'guest',
    notApplicable:
      "needs blkback's persistent-grant cache; gnttab has no block backend (XSA-365 runs the batch-map recovery it relies on)",
  },
  {
    id: 376,
    year: 2021,
    title: 'PV frontends not protected against malicious backends (support statement)',
    op: 'none (document only)',
    side: 'guest',
    notApplicable:
      'a support statement, not a flaw: nothing to run (XSA-396 and XSA-403 are the frontend flaws that followed)',
  },
];

/** Every advisory, by number. */
export const XSA_CATALOGUE: readonly XsaEntry[] = [
  xsa18,
  xsa73,
  xsa155,
  xsa226,
  xsa318,
  xsa365,
  xsa380,
  xsa403,
  xsa411,
  xsa501,
  xsa24,
  xsa26,
  xsa134,
  xsa214,
  xsa217,
  xsa218,
  xsa228,
  xsa236,
  xsa287,
  xsa230,
  xsa295,
  xsa361,
  xsa362,
  xsa367,
  xsa379,
  xsa382,
  xsa384,
  xsa486,
  xsa387,
  xsa394,
  xsa396,
  xsa448,
  xsa500,
  ...notApplicable,
].sort((x, y) => x.id - y.id);

/** The catalogue entry of advisory `id`, if any. */
export function xsaEntry(id: number): XsaEntry | undefined {
  return XSA_CATALOGUE.find((e) => e.id === id);
}

/** Runs advisory `id`'s scenario on a fresh host. */
export async function runXsa(id: number, options?: XsaRunOptions): Promise<XsaResult> {
  const e = xsaEntry(id);
  if (e === undefined) throw new RangeError(`XSA-${id} is not in the catalogue`);
  if (e.run === undefined) throw new RangeError(`XSA-${id} is not applicable: ${e.notApplicable}`);
  return e.run(options);
}
