// Worker bootstrap for running from TypeScript sources on Node < 22.18: registers
// tsx in this thread, then imports the real .ts entry named in workerData.
import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
// src/host/user-module.ts then adds only its ESM-for-.ts hook for a user's module.
globalThis[Symbol.for('gnttab.tsxRegistered')] = true;
await import(workerData.entry);
