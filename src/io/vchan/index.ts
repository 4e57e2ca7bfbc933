// libxenvchan: byte streams and packets between two domains (guest-side.md §6).
export * from './layout.ts';
export {
  connectVchanServices,
  EventWaiter,
  openVchanServices,
  type VchanServices,
  type VchanServicesOptions,
} from './services.ts';
export { atoi, Vchan } from './vchan.ts';
