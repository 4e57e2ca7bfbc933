// Runs the gnttab command as a user runs it: a subprocess through bin/gnttab.mjs.
// The bin runs the sources in this checkout; GNTTAB_USE_DIST=1 in the test's
// environment makes it (and so every CLI test) run the build in dist/ instead.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
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

/** A `gnttab serve` running in a subprocess: its URL, what it has printed, and how to stop it. */
export interface Served {
  url: string;
  proc: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** SIGTERM, as Ctrl-C's twin; resolves with the exit code once it has exited. */
  stop(): Promise<number | null>;
}

/**
 * Starts `gnttab serve --port 0 <args>` and resolves once it says where it
 * listens. The command runs in this one process (the gnttab-source condition,
 * so the bin does not re-exec), so that SIGTERM reaches it.
 */
export function serve(args: string[], opts: { echoStderr?: boolean } = {}): Promise<Served> {
  const proc = spawn(process.execPath, ['--conditions=gnttab-source', bin, 'serve', '--port', '0', ...args], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  proc.stderr?.on('data', (b: Buffer) => {
    err += b.toString();
    if (opts.echoStderr) process.stderr.write(b);
  });
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGTERM');
      // A guard against a server that does not stop, not a claim about time.
      const guard = setTimeout(() => proc.kill('SIGKILL'), 30_000);
      const code = await exited;
      clearTimeout(guard);
      return code;
    }
    return exited;
  };
  return new Promise<Served>((resolve, reject) => {
    proc.stdout?.on('data', (b: Buffer) => {
      out += b.toString();
      const m = /at (http:\/\/\S+\/) \(read-only/.exec(out);
      if (m) resolve({ url: m[1]!, proc, stdout: () => out, stderr: () => err, stop });
    });
    void exited.then((code) => reject(new Error(`gnttab serve exited (${code}): ${out}${err}`)));
  });
}
