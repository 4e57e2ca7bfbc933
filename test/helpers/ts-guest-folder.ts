// A folder of TypeScript user modules outside any "type": "module" package, as
// a user has them: none (no package.json at all) or npm init's "type": "commonjs".
// Its guest and scenario use an enum (TypeScript-only syntax) and import a
// sibling `.ts` file, so they load only as ES modules compiled by tsx.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TsGuestFolder {
  dir: string;
  guest: string;
  scenario: string;
  remove(): void;
}

export function tsGuestFolder(packageType: 'none' | 'commonjs'): TsGuestFolder {
  const dir = mkdtempSync(join(tmpdir(), `gnttab-ts-${packageType}-`));
  if (packageType === 'commonjs') writeFileSync(join(dir, 'package.json'), '{ "type": "commonjs" }\n');
  writeFileSync(
    join(dir, 'greeting.ts'),
    `export enum Greeting { Hello = 2 }
export function greet(who: string): string { return \`hello from \${who}\`; }
`,
  );
  writeFileSync(
    join(dir, 'guest.ts'),
    `import type { GuestContext } from 'gnttab';
import { Greeting, greet } from './greeting.ts';
export default function guest(ctx: GuestContext, args: { role?: string }): { greeting: number; role: string } {
  const role: string = args.role ?? 'spawned';
  ctx.log(greet(role));
  return { greeting: Greeting.Hello, role };
}
`,
  );
  writeFileSync(
    join(dir, 'scenario.ts'),
    `import type { Host } from 'gnttab';
import { Greeting } from './greeting.ts';
export default function scenario(host: Host): void {
  const count: number = Greeting.Hello;
  for (let i = 0; i < count; i++) host.createDomain({ kind: 'pv', memoryKiB: 1024 });
}
`,
  );
  return {
    dir,
    guest: join(dir, 'guest.ts'),
    scenario: join(dir, 'scenario.ts'),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
