// The web view in a real browser: `gnttab serve` runs the paced demo, Debian's
// chromium (headless, driven by playwright-core) shows it, and the page must
// follow the host: domains and entries appear, an entry's flags gain
// reading|writing when the backend maps it (Xen's _set_status_v1 sets
// GTF_reading/GTF_writing on a writable map), the mapping arrow appears and
// goes after the unmap, and the page's sequence number reaches the server's.
// Every wait is for a condition; the timeouts only guard against a hang.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { root, type Served, serve } from '../helpers/cli.ts';

/** The page's document, as the functions run in the browser see it (this project has no DOM types). */
declare const document: {
  querySelector(
    sel: string,
  ): { textContent: string | null; getAttribute(name: string): string | null } | null;
};

const CHROMIUM = process.env.GNTTAB_CHROMIUM ?? '/usr/bin/chromium';
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
/** A guard against a hang, never a claim about speed. */
const GUARD = 240_000;
const ARTIFACTS = join(root, 'test-artifacts');

const missing = !existsSync(CHROMIUM);

describe('gnttab serve in chromium (the paced demo)', {
  skip: missing && !process.env.CI ? `no ${CHROMIUM} (apt-get install -y chromium)` : false,
}, () => {
  let server: Served | undefined;
  let url = '';
  let context: BrowserContext;
  let page: Page;
  const profile = mkdtempSync(join(tmpdir(), 'gnttab-chromium-'));

  before(async () => {
    server = await serve(['--pace', '3000'], { echoStderr: true });
    url = server.url;
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: FLAGS,
      viewport: { width: 1400, height: 1000 },
    });
    page = context.pages()[0] ?? (await context.newPage());
  });

  after(async () => {
    await context?.close();
    await server?.stop();
    rmSync(profile, { recursive: true, force: true });
  });

  it('shows the domains and entries; flags gain reading|writing on map; the arrow comes and goes; the page keeps up', async () => {
    page.setDefaultTimeout(GUARD);
    await page.goto(url);
    // Both domains: d0 the backend (the first domain is dom0), d1 the frontend.
    await page.getByTestId('domain-d0').waitFor();
    await page.getByTestId('domain-d1').waitFor();
    // The vchan's shared page: the ring-ref the frontend publishes in xenstore
    // (libxenvchan), granted to the backend and not yet mapped.
    const ringRef = page.getByTestId('xenstore').getByText(/^ring-ref = "\d+"$/);
    await ringRef.waitFor();
    const ref = Number(/"(\d+)"/.exec((await ringRef.textContent()) ?? '')?.[1]);
    assert.ok(Number.isInteger(ref) && ref >= 8, `ring-ref above Linux's reserved refs: ${ref}`);
    await page.getByTestId(`entry-d1-${ref}`).waitFor();
    const flags = page.getByTestId(`entry-d1-${ref}`).locator('td.flags');
    assert.equal(await flags.textContent(), 'permit_access');
    // The backend maps it (vchan client_init): reading|writing, and the arrow d0 -> d1's entry.
    await page.waitForFunction(
      (id) =>
        document.querySelector(`[data-testid="${id}"] td.flags`)?.textContent ===
        'permit_access|reading|writing',
      `entry-d1-${ref}`,
      { timeout: GUARD, polling: 50 },
    );
    const arrow = page.getByTestId(`arrow-d0-d1-${ref}`);
    await arrow.waitFor({ state: 'attached' });
    assert.match((await arrow.getAttribute('d')) ?? '', /^M[\d.-]+,[\d.-]+ C/);
    // The event channel between them is drawn too.
    await page.locator('[data-testid^="evtchn-link-d"]').first().waitFor({ state: 'attached' });
    // Clicking the entry shows its 8 bytes (grant_entry_v1) and the bits.
    await page.getByTestId(`entry-d1-${ref}`).click();
    const bytes = (await page.getByTestId('entry-bytes').textContent()) ?? '';
    assert.equal(bytes.replace(/\s+/g, '').length, 16, `8 bytes of grant_entry_v1: ${bytes}`);
    assert.match((await page.getByTestId('entry-detail').textContent()) ?? '', /GTF_reading/);
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, 'web-view.png'), fullPage: true });
    // The backend unmaps (vchan close): the arrow goes, the flags lose reading|writing.
    await arrow.waitFor({ state: 'detached' });
    await page.waitForFunction(
      (id) => {
        const f = document.querySelector(`[data-testid="${id}"] td.flags`);
        return f === null || f.textContent === 'permit_access';
      },
      `entry-d1-${ref}`,
      { timeout: GUARD, polling: 50 },
    );
    // The page keeps up: once the demo has ended, its sequence number reaches the server's.
    await new Promise<void>((resolve) => {
      const check = () => (/the demo has ended/.test(server!.stdout()) ? resolve() : setTimeout(check, 100));
      check();
    });
    const status = (await (await fetch(`${url}api/status`)).json()) as { seq: number; hypercalls: number };
    assert.ok(status.hypercalls > 0);
    await page.waitForFunction(
      (seq) => Number(document.querySelector('[data-testid="seq"]')?.getAttribute('data-seq')) >= seq,
      status.seq,
      { timeout: GUARD },
    );
    // The timeline has the hypercalls, and pausing freezes it.
    await page.getByTestId('pause').click();
    assert.equal(await page.getByTestId('pause').textContent(), 'resume');
    assert.match((await page.getByTestId('timeline').textContent()) ?? '', /grant_table_op\/map_grant_ref/);
    // Read-only: anything but GET is refused.
    assert.equal((await fetch(`${url}api/state`, { method: 'POST' })).status, 405);
  });
});
