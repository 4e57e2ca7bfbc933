// gnttab: Xen's grant tables in TypeScript. The package root exports the
// byte-exact ABI, the host API (single-thread and worker threads), and the
// guest side built on them: the grant-table driver, event channels, xenstore,
// ring.h rings and vchan.
export * from './abi/index.ts';
export type { GuestReport, LeftBehind, RunGuestArgs, RunReport } from './cli/run.ts';
export type { DomainKind, GuestClock, GuestContext, StartInfo, WaitResult } from './guest/context.ts';
export { EventChannels, EventWaiter } from './guest/events.ts';
export {
  type ForeignMapping,
  mapForeignRefs,
  unmapForeignRefs,
} from './guest/gnttab/backend.ts';
export { Gntalloc } from './guest/gnttab/gntalloc.ts';
export {
  Gntdev,
  type GrantCopyForeign,
  type GrantCopySegment,
  type GrantRef,
} from './guest/gnttab/gntdev.ts';
export { Gnttab, type GnttabOptions as GnttabDriverOptions } from './guest/gnttab/grant-table.ts';
export { Xengntshr, XengntshrShare } from './guest/gnttab/xengntshr.ts';
export { Xengnttab, XengnttabMapping } from './guest/gnttab/xengnttab.ts';
/** The guest's hypercall stubs (grant_table_op and friends with their structs placed in guest memory). */
export * as guestHypercall from './guest/hypercall.ts';
/** Where a guest kernel puts things in its own address space (shared info, grant frames, the hypercall area). */
export * as layout from './guest/layout.ts';
export { PageAllocator } from './guest/pages.ts';
export { errnoCode, errnoNumber, XenError } from './guest/xen-error.ts';
export {
  Xenevtchn,
  type XenevtchnPendingOptions,
  type XenevtchnWaitOptions,
} from './guest/xenevtchn.ts';
export { type DecodedEntry, DecodeError, decodeGrantFrames } from './host/decode.ts';
export {
  DomainDestroyedError,
  DomainHandle,
  type DomainOptions,
  type GuestJob,
  type GuestOutcome,
  Host,
  type HostOptions,
  type JobResult,
} from './host/host.ts';
export type { InjectedFault, P2mEntry, P2mTypeName, PageInfo } from './host/introspect.ts';
export type { PortSnapshot } from './host/port-snapshot.ts';
export { snapshotTables, type TableSnapshot } from './host/snapshot.ts';
export {
  GuestCrash,
  type SpawnOptions,
  type ThreadDomain,
  WorkerHost,
  type WorkerHostOptions,
} from './host/worker-host.ts';
export { FlexRing } from './io/flex-ring.ts';
export {
  BackRing,
  FrontRing,
  type RingLayout,
  ringSize,
  SharedRing,
  sharedRingInit,
  shouldNotify,
} from './io/ring.ts';
export {
  connectVchanServices,
  openVchanServices,
  Vchan,
  type VchanChunkOptions,
  type VchanIoOptions,
  type VchanServices,
  type VchanServicesOptions,
  type VchanStreamOptions,
} from './io/vchan/index.ts';
export {
  type XsClient,
  XsError,
  type XsPerm,
  type XsTransactionClient,
  type XsWaitOptions,
  type XsWatchCallback,
  type XsWatchEvent,
  type XsWatchEventsOptions,
} from './io/xenstore/api.ts';
export { XsRingClient } from './io/xenstore/client.ts';
export { GuestFault, GuestMemory } from './machine/guest-memory.ts';
export {
  ATTACK_RING,
  type AttackFinding,
  type AttackLogEntry,
  type AttackOptions,
  type AttackProtocol,
  type AttackReport,
  type AttackRole,
  attack,
  fillByte,
  KEY_EVENT_CHANNEL,
  KEY_RING_REF,
  OP_READ,
  OP_WRITE,
  parseU32,
  peerClosed,
  REQ_GREF,
  REQ_ID,
  REQ_LENGTH,
  REQ_OFFSET,
  REQ_OP,
  RSP_ID,
  RSP_STATUS,
  type VictimArgs,
} from './toolkit/attack/index.ts';
export {
  type Board,
  checkRevoke,
  defineScenario,
  type ExploreArgs,
  type ExploreFailure,
  type ExploreOptions,
  type ExploreResult,
  explore,
  mappingBackend,
  type RevokeParams,
  revokeScenario,
  revokingFrontend,
  type Scenario,
  type ScenarioRun,
  type TraceStep,
} from './toolkit/explore/index.ts';
export {
  runXsa,
  XSA_CATALOGUE,
  type XsaCheck,
  type XsaEntry,
  type XsaRace,
  type XsaResult,
  type XsaRunOptions,
  type XsaSide,
  type XsaStep,
  xsaEntry,
} from './toolkit/xsa/index.ts';
export type { GnttabOptions } from './xen/hypervisor.ts';
export type { InvariantOptions } from './xen/invariants.ts';
