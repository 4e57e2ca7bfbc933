// The web view in a real browser: `gnttab serve` runs the paced demo, Debian's
// chromium (headless, driven by playwright-core) shows it, and the page must
// follow the host: domains and entries appear, an entry's flags gain
// reading|writing when the backend maps it (Xen's _set_status_v1 sets
// GTF_reading/GTF_writing on a writable map), the mapping arrow appears and
// goes after the unmap; the timeline, paused, stays as it was while hypercalls
// come, scrubs back to earlier records and, resumed, follows the host again; and
// the page's sequence number, records and totals reach the server's.
// Every wait is for a condition; the timeouts only guard against a hang.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { DOMAINS, GRANTS, MAPPED_DOMAINS, MAPS_EACH } from '../fixtures/serve/many-domains.ts';
import { root, type Served, serve } from '../helpers/cli.ts';

/** What the functions run in the browser see of the page (this project has no DOM types). */
interface PageElement {
  textContent: string | null;
  scrollTop: number;
  scrollHeight: number;
  getAttribute(name: string): string | null;
  getBoundingClientRect(): { width: number; height: number };
}
declare const document: {
  querySelector(sel: string): PageElement | null;
  querySelectorAll(sel: string): ArrayLike<PageElement>;
  documentElement: { scrollWidth: number; clientWidth: number };
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

  it('shows the domains and entries; flags gain reading|writing on map; the arrow comes and goes; the timeline pauses, scrubs back and resumes; the page keeps up', async () => {
    page.setDefaultTimeout(GUARD);
    const status = async () =>
      (await (await fetch(`${url}api/status`)).json()) as {
        seq: number;
        hypercalls: number;
        records: number;
        lost: number;
      };
    /** Until the page has had every message up to `seq`. */
    const caughtUp = (seq: number) =>
      page.waitForFunction(
        (n) => Number(document.querySelector('[data-testid="seq"]')?.getAttribute('data-seq')) >= n,
        seq,
        { timeout: GUARD },
      );
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
    // Pausing the timeline freezes what it shows: the records, the lanes, the counts.
    const timeline = page.getByTestId('timeline');
    const pause = page.getByTestId('pause');
    const num = async (testid: string, attr: string) =>
      Number(await page.getByTestId(testid).getAttribute(attr));
    await pause.click();
    assert.equal(await pause.textContent(), 'resume');
    assert.equal(await timeline.getAttribute('data-paused'), '1');
    const frozen = await timeline.innerHTML();
    const frozenRecords = await num('timeline', 'data-records');
    const frozenLast = await num('timeline', 'data-last');
    const frozenCalls = await num('total-calls', 'data-calls');
    assert.ok(frozenRecords > 0 && frozenCalls > 0);
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
    // New hypercalls since the pause, and the page has had them (its sequence number has
    // reached the server's), yet the timeline shows what it showed.
    const during = await status();
    assert.ok(
      during.hypercalls > frozenCalls,
      `${during.hypercalls} hypercalls, ${frozenCalls} at the pause`,
    );
    await caughtUp(during.seq);
    assert.equal(await timeline.innerHTML(), frozen);
    // Scrubbing back: the window ends earlier and shows the earlier records, with the
    // hypervisor's counts as they stood then.
    await page.getByTestId('scrub').fill('0');
    await page.waitForFunction(
      (last) => Number(document.querySelector('[data-testid="timeline"]')?.getAttribute('data-end')) < last,
      frozenLast,
      { timeout: GUARD, polling: 50 },
    );
    const end = await num('timeline', 'data-end');
    const shownLast = await num('timeline', 'data-last');
    assert.ok(
      shownLast <= end && shownLast < frozenLast,
      `last shown ${shownLast}, end ${end}, frozen ${frozenLast}`,
    );
    assert.ok((await num('timeline', 'data-shown')) > 0);
    assert.equal(await num('timeline', 'data-records'), frozenRecords);
    assert.notEqual(await page.getByTestId('timeline-last').textContent(), '');
    assert.ok((await num('total-calls', 'data-calls')) <= frozenCalls);
    assert.match(
      (await page.getByTestId('hypercall-totals').textContent()) ?? '',
      /, as of \d\d:\d\d:\d\d\.\d{3}\./,
    );
    // Resuming follows the host again: the records that came during the pause are there.
    await pause.click();
    assert.equal(await pause.textContent(), 'pause');
    assert.equal(await timeline.getAttribute('data-paused'), '0');
    assert.ok((await num('timeline', 'data-records')) > frozenRecords);
    assert.ok((await num('timeline', 'data-last')) > frozenLast);
    assert.ok((await num('total-calls', 'data-calls')) >= during.hypercalls);
    // The page keeps up: once the demo has ended, its sequence number reaches the server's,
    // its timeline holds every record the server sent and its totals are the hypervisor's.
    await new Promise<void>((resolve) => {
      const check = () => (/the demo has ended/.test(server!.stdout()) ? resolve() : setTimeout(check, 100));
      check();
    });
    // (The server drains the ring's last records at its next ticks: until the page has what
    // the server last said it sent, look again.)
    let final = await status();
    for (;;) {
      await caughtUp(final.seq);
      const shown = [await num('timeline', 'data-records'), await num('total-calls', 'data-calls')];
      if (shown[0] === final.records && shown[1] === final.hypercalls) break;
      await new Promise((r) => setTimeout(r, 100));
      final = await status();
    }
    assert.ok(final.hypercalls > 0);
    assert.equal(await num('hypercall-totals', 'data-lost'), final.lost);
    assert.match((await timeline.textContent()) ?? '', /grant_table_op\/map_grant_ref/);
    // Read-only: anything but GET is refused.
    assert.equal((await fetch(`${url}api/state`, { method: 'POST' })).status, 405);
  });
});

describe('gnttab serve in chromium (a dozen domains, a hundred entries each)', {
  skip: missing && !process.env.CI ? `no ${CHROMIUM} (apt-get install -y chromium)` : false,
}, () => {
  let server: Served | undefined;
  let context: BrowserContext;
  let page: Page;
  const profile = mkdtempSync(join(tmpdir(), 'gnttab-chromium-'));

  before(async () => {
    server = await serve(['test/fixtures/serve/many-domains.ts'], { echoStderr: true });
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

  it('stays readable: no sideways scrolling, each table scrolls in its own box, arrows follow', async () => {
    page.setDefaultTimeout(GUARD);
    await page.goto(server!.url);
    for (let d = 0; d < DOMAINS; d++) await page.getByTestId(`domain-d${d}`).waitFor();
    assert.equal(
      await page.getByTestId('domain-counts-d1').textContent(),
      `${GRANTS} entries in use, ${MAPS_EACH} pinned`,
    );
    assert.equal(await page.locator('[data-testid^="entry-d5-"]').count(), GRANTS);
    const arrows = page.locator('[data-testid^="arrow-d0-"]');
    await page.waitForFunction(
      (n) => document.querySelectorAll('[data-testid^="arrow-d0-"]').length === n,
      MAPPED_DOMAINS * MAPS_EACH,
      { timeout: GUARD },
    );
    // The page is as wide as the window, and no domain's box is taller than its table's box
    // and a little more, however many entries it has.
    const layout = await page.evaluate(() => ({
      width: document.documentElement.scrollWidth,
      window: document.documentElement.clientWidth,
      heights: Array.from(document.querySelectorAll('.domain'), (el) => el.getBoundingClientRect().height),
    }));
    assert.ok(layout.width <= layout.window, `${layout.width} px wide in a ${layout.window} px window`);
    assert.equal(layout.heights.length, DOMAINS);
    assert.ok(Math.max(...layout.heights) < 520, `domain boxes ${layout.heights.join(', ')} px tall`);
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, 'web-view-many.png'), fullPage: true });
    // d1's entries scrolled to their end: the mapped rows are out of the box, and the arrows
    // to them are drawn from its edge, faint; scrolled back, they point at the rows again.
    const scrollD1 = (to: 'end' | 'start') =>
      page.evaluate((where) => {
        const box = document.querySelector('[data-testid="domain-d1"] .scroll.entries')!;
        box.scrollTop = where === 'end' ? box.scrollHeight : 0;
      }, to);
    const arrowClass = (cls: string) =>
      page.waitForFunction(
        (want) => document.querySelector('[data-testid="arrow-d0-d1-8"]')?.getAttribute('class') === want,
        cls,
        { timeout: GUARD, polling: 50 },
      );
    await arrowClass('map');
    await scrollD1('end');
    await arrowClass('map hidden');
    assert.equal(await arrows.count(), MAPPED_DOMAINS * MAPS_EACH);
    await scrollD1('start');
    await arrowClass('map');
    // Clicking an entry of the last domain still shows its bytes.
    await page.getByTestId(`entry-d${DOMAINS - 1}-8`).click();
    assert.match(
      (await page.getByTestId('entry-detail').textContent()) ?? '',
      new RegExp(`d${DOMAINS - 1} ref 8`),
    );
  });
});
