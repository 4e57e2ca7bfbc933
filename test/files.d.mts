// Types for test/files.mjs (the list of test files), for tests that read it.
export declare const testFiles: string[];
export declare const slowFiles: string[];
