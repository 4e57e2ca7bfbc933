// libxenvchan: byte streams and packets between two domains (guest-side.md §6).
export * from './layout.ts';
export {
  connectVchanServices,
  EventWaiter,
  openVchanServices,
  type VchanServices,
  type VchanServicesOptions,
} from './services.ts';
export type { VchanStreamOptions } from './stream.ts';
export { atoi, Vchan, type VchanChunkOptions, type VchanIoOptions } from './vchan.ts';
