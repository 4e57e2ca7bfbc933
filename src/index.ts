// gnttab: Xen's grant tables in TypeScript. The package root exports the host
// API and the byte-exact ABI.
export * from './abi/index.ts';
export {
  DomainDestroyedError,
  DomainHandle,
  type DomainOptions,
  Host,
  type HostOptions,
} from './host/host.ts';
export { GuestFault, GuestMemory } from './machine/guest-memory.ts';
export type { DomainKind } from './xen/domain.ts';
export type { GnttabOptions } from './xen/hypervisor.ts';
export type { InvariantOptions } from './xen/invariants.ts';
