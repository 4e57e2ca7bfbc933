#!/usr/bin/env node
// The `gnttab` command. Runs the built CLI from dist/ when present; in a source
// checkout (after `npm ci`), loads the TypeScript sources through tsx.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const built = new URL('../dist/cli/main.js', import.meta.url);
let mod;
if (existsSync(fileURLToPath(built))) {
  mod = await import(built.href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  mod = await import(new URL('../src/cli/main.ts', import.meta.url).href);
}
await mod.main(process.argv);
