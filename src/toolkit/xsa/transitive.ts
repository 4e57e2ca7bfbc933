// The transitive-grant setting of XSA-226, 318, 411 and 501: A (v2) grants
// g1 to B; B (v2) has a transitive entry t for C onto (A, g1).
import { DOMID_SELF } from '../../abi/domid.ts';
import { GNTCOPY_source_gref, GTF_permit_access, GTF_transitive } from '../../abi/flags.ts';
import type { HostOptions } from '../../host/host.ts';
import { Lab, type LabDomain } from './lab.ts';

export const G1 = 10;
export const T = 20;
export const PAYLOAD = 0x5a;

export interface TransitiveWorld {
  lab: Lab;
  a: LabDomain;
  b: LabDomain;
  c: LabDomain;
}

export function transitiveWorld(id: number, title: string, host: HostOptions = {}): TransitiveWorld {
  const lab = new Lab(id, title, host);
  const a = lab.domain('A', { kind: 'pv', version: 2 });
  const b = lab.domain('B', { kind: 'pv', version: 2 });
  const c = lab.domain('C', { kind: 'pv' });
  a.dom.memory.fill(0x3000, 4096, PAYLOAD);
  a.grant(G1, b, a.frameOf(0x3000), GTF_permit_access);
  b.grantTransitive(T, c, a, G1, GTF_transitive);
  lab.note(`A grants g1 = ref ${G1} to B; B's ref ${T} is transitive for C onto (A, g1)`);
  return { lab, a, b, c };
}

/** One copy element: `len` bytes from (granter, ref) into C's page at 0x8000. */
export function copyFrom(granter: LabDomain, ref: number, into: LabDomain, len = 16, status = 0) {
  return {
    source_u: ref,
    source_domid: granter.domid,
    dest_u: into.frameOf(0x8000),
    dest_domid: DOMID_SELF,
    len,
    flags: GNTCOPY_source_gref,
    status,
  };
}
