// The explicit list of test files (Node 20 does not discover .ts tests itself).
export const testFiles = [
  'test/abi/constants.test.ts',
  'test/xen/smoke.test.ts',
  'test/xen/map-unmap.test.ts',
  'test/xen/copy.test.ts',
  'test/xen/transfer.test.ts',
  'test/conformance/raw-abi.test.ts',
];
