// The explicit list of test files (Node 20 does not discover .ts tests itself).
export const testFiles = [
  'test/abi/constants.test.ts',
  'test/xen/smoke.test.ts',
  'test/xen/map-unmap.test.ts',
  'test/xen/copy.test.ts',
  'test/xen/transfer.test.ts',
  'test/xen/table-ops.test.ts',
  'test/xen/set-version.test.ts',
  'test/xen/dispatch.test.ts',
  'test/guest/gnttab.test.ts',
  'test/guest/backend.test.ts',
  'test/guest/alloc-model.test.ts',
  'test/host/workers.test.ts',
  'test/host/single-thread.test.ts',
  'test/host/revoke-race.test.ts',
  'test/conformance/raw-abi.test.ts',
];
