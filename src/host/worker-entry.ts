// One function resolves a worker's entry, for sources and for built output.
// Node before 22.18 cannot start a worker on a .ts file, not even under tsx
// (the loader hooks are not inherited), so from sources the worker starts on a
// small .mjs bootstrap that registers tsx and imports the .ts entry.
import type { WorkerOptions } from 'node:worker_threads';

export interface WorkerEntry {
  /** What to pass to `new Worker`. */
  file: URL;
  /** workerData additions the bootstrap needs (the real entry). */
  data: { entry?: string };
  execArgv?: WorkerOptions['execArgv'];
}

function nodeStripsTypes(): boolean {
  const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
  return major > 22 || (major === 22 && minor >= 18);
}

/**
 * `name` is the module's base name without extension ("domain-thread"),
 * beside this file or beside `base` (another module's import.meta.url).
 */
export function resolveWorkerEntry(name: string, base: string = import.meta.url): WorkerEntry {
  const here = import.meta.url;
  if (base.endsWith('.js')) return { file: new URL(`./${name}.js`, base), data: {} };
  const ts = new URL(`./${name}.ts`, base);
  if (nodeStripsTypes() && process.env.GNTTAB_FORCE_BOOTSTRAP === undefined) return { file: ts, data: {} };
  return { file: new URL('./worker-bootstrap.mjs', here), data: { entry: ts.href } };
}
