// Loads a user's module (a guest program, a scenario) by URL, `.ts` included.
// A user's `.ts` file is an ES module (it has a default export), wherever it is:
// neither tsx nor Node would take it for one in a folder without a package.json
// of "type": "module" (no package.json at all, or npm init's "type": "commonjs").
// There tsx hands it to the CommonJS loader, which on Node 20.19+ sees ESM
// syntax, tries require(esm) and fails with ERR_REQUIRE_CYCLE_MODULE; Node 22/24
// fail on `export` or give the exports object as the default. So before the
// first TypeScript import, this thread gets tsx (Node 20 cannot strip types;
// Node 22/24 refuse `.ts` under node_modules and TypeScript-only syntax such as
// enums) unless it already has it, and a load hook that asks for every `.ts`,
// `.mts` and `.tsx` file outside node_modules as an ES module (`.cts` stays
// CommonJS). A worker has its own loader and registers again.
import { register } from 'node:module';

const TS_FILE = /\.[cm]?tsx?$/;

/** Set on globalThis by whoever registered tsx's ESM hooks in this thread (bin, worker bootstrap, here). */
const TSX_REGISTERED = Symbol.for('gnttab.tsxRegistered');

// Runs in the loader's thread, as a data: URL so that it needs no file of its
// own in the package and loads before any TypeScript can. Registered after tsx,
// it runs first and passes the format on to tsx's load, which then compiles
// the file as ESM.
const ESM_TS_HOOK = `
export async function load(url, context, nextLoad) {
  if (url.startsWith('file:') && !url.includes('/node_modules/') && /\\.(?:m?ts|tsx)$/.test(new URL(url).pathname))
    return nextLoad(url, { ...context, format: 'module' });
  return nextLoad(url, context);
}`;

let prepared = false;

function tsxInThisThread(): boolean {
  if ((globalThis as Record<symbol, unknown>)[TSX_REGISTERED] === true) return true;
  // `node --import tsx` (the test runner): its hooks are already in this thread.
  const argv = process.execArgv;
  return argv.some((a, i) => a === '--import=tsx' || (a === '--import' && argv[i + 1] === 'tsx'));
}

async function prepareTypeScript(): Promise<void> {
  if (prepared) return;
  if (!tsxInThisThread()) {
    let api: { register: () => unknown };
    try {
      api = (await import('tsx/esm/api')) as { register: () => unknown };
    } catch (err) {
      throw new Error(
        `loading TypeScript needs the tsx package, which could not be loaded (${err instanceof Error ? err.message : String(err)}); reinstall gnttab or compile the module to .js`,
      );
    }
    api.register();
    (globalThis as Record<symbol, unknown>)[TSX_REGISTERED] = true;
  }
  register(`data:text/javascript,${encodeURIComponent(ESM_TS_HOOK)}`);
  prepared = true;
}

/** Imports the module at `url` (a file: URL), as an ES module with tsx when it is TypeScript. */
export async function importUserModule(url: string): Promise<Record<string, unknown>> {
  if (TS_FILE.test(new URL(url).pathname)) await prepareTypeScript();
  return (await import(url)) as Record<string, unknown>;
}
