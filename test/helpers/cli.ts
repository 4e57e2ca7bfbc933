// Runs the gnttab command as a user runs it: a subprocess through bin/gnttab.mjs.
// The bin runs the sources in this checkout; GNTTAB_USE_DIST=1 in the test's
// environment makes it (and so every CLI test) run the build in dist/ instead.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = fileURLToPath(new URL('../..', import.meta.url));
export const bin = join(root, 'bin', 'gnttab.mjs');

export interface CliResult {
  code: number | null;
  out: string;
  err: string;
}

export function gnttab(
  args: string[],
  opts: { input?: Uint8Array; env?: Record<string, string>; cwd?: string } = {},
): CliResult {
  const r = spawnSync(process.execPath, [bin, ...args], {
    cwd: opts.cwd ?? root,
    input: opts.input,
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, ...opts.env },
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}
