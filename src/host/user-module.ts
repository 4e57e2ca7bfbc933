// Loads a user's module (a guest program, a scenario) by URL, `.ts` included.
// Running from sources, this thread already loads TypeScript (tsx, or Node's own
// type stripping), and so does the user's file. Running from the built package
// (dist/), a `.ts` file needs tsx on every Node line: Node 20 cannot strip
// types, and Node 22/24 refuse `.ts` under node_modules, TypeScript-only syntax
// (enums) and ESM `.ts` in a "type": "commonjs" folder (npm init's default).
// So tsx is registered in this thread, once, before the first such import; a
// worker has its own loader and registers again.

const TS_FILE = /\.[cm]?tsx?$/;
let tsxRegistered = false;

async function registerTsx(): Promise<void> {
  if (tsxRegistered || import.meta.url.endsWith('.ts')) return;
  let api: { register: () => unknown };
  try {
    api = (await import('tsx/esm/api')) as { register: () => unknown };
  } catch (err) {
    throw new Error(
      `loading TypeScript needs the tsx package, which could not be loaded (${err instanceof Error ? err.message : String(err)}); reinstall gnttab or compile the module to .js`,
    );
  }
  api.register();
  tsxRegistered = true;
}

/** Imports the module at `url` (a file: URL), registering tsx first when it is TypeScript. */
export async function importUserModule(url: string): Promise<Record<string, unknown>> {
  if (TS_FILE.test(new URL(url).pathname)) await registerTsx();
  return (await import(url)) as Record<string, unknown>;
}
