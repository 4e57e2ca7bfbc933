// The page of `gnttab serve`: Preact + htm, no build step. It reads the
// server's event stream (/api/events) and draws the host: domains and their
// grant tables, mappings as arrows from grantee to the granter's entry, event
// channels between domains, the xenstore tree, and the hypercall timeline.

import htm from 'htm';
import { h, render } from 'preact';
import { useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';

const html = htm.bind(h);
const MAX_RECORDS = 20000;

// ---- grant-entry bits (xen/include/public/grant_table.h) -------------------------------------

const TYPES = ['invalid', 'permit_access', 'accept_transfer', 'transitive'];
const FLAG_BITS = [
  [0, 'GTF_type (bits 0-1)', 'entry type: 0 invalid, 1 permit_access, 2 accept_transfer, 3 transitive'],
  [
    2,
    'GTF_readonly',
    'the grantee may map the frame read-only only (accept_transfer: GTF_transfer_committed)',
  ],
  [3, 'GTF_reading', 'Xen: the grantee is reading the frame (v1 here; v2 in the status word)'],
  [4, 'GTF_writing', 'Xen: the grantee is writing the frame (v1 here; v2 in the status word)'],
  [5, 'GTF_PWT', 'cache attribute: page write-through'],
  [6, 'GTF_PCD', 'cache attribute: page cache disable'],
  [7, 'GTF_PAT', 'cache attribute: page attribute table'],
  [8, 'GTF_sub_page', 'v2: only [offset, offset+length) of the frame is granted'],
];

function hex(n, w = 0) {
  return `0x${n.toString(16).padStart(w, '0')}`;
}

function le(n, bytes) {
  const out = [];
  let v = BigInt(n);
  for (let i = 0; i < bytes; i++) {
    out.push(Number(v & 0xffn));
    v >>= 8n;
  }
  return out;
}

/** The entry's bytes as its layout places them (v1: 8 bytes; v2: 16, and the status word). */
function entryBytes(t, e) {
  const head = [...le(e.flags, 2), ...le(e.domid, 2)];
  if (t.version === 1)
    return [
      { name: 'flags', b: head.slice(0, 2) },
      { name: 'domid', b: head.slice(2) },
      { name: 'frame', b: le(e.frame, 4) },
    ];
  const parts = [
    { name: 'hdr.flags', b: head.slice(0, 2) },
    { name: 'hdr.domid', b: head.slice(2) },
  ];
  if (e.transDomid !== undefined)
    parts.push(
      { name: 'trans_domid', b: le(e.transDomid, 2) },
      { name: 'pad', b: [0, 0] },
      { name: 'gref', b: le(e.frame, 4) },
      { name: '(unused)', b: [0, 0, 0, 0] },
    );
  else if (e.subPage !== undefined)
    parts.push(
      { name: 'page_off', b: le(e.subPage.offset, 2) },
      { name: 'length', b: le(e.subPage.length, 2) },
      { name: 'frame', b: le(e.frame, 8) },
    );
  else parts.push({ name: 'pad0', b: [0, 0, 0, 0] }, { name: 'frame', b: le(e.frame, 8) });
  return parts;
}

function pinsText(e) {
  const p = e.active?.pins;
  return p ? `${p.hostWrite}/${p.hostRead}/${p.devWrite}/${p.devRead}` : '-';
}

function statusText(s) {
  return [s & 8 ? 'reading' : '', s & 16 ? 'writing' : ''].filter(Boolean).join('|') || '-';
}

// ---- the stream --------------------------------------------------------------------------------

const MAX_SNAPSHOTS = 5000;

/** The newer of two readings of the hypervisor's counters (they only grow). */
function newer(a, b) {
  if (!a) return b;
  if (!b) return a;
  return b.totals.calls >= a.totals.calls ? b : a;
}

function useHost() {
  const [view, setView] = useState({
    state: null,
    seq: 0,
    title: '',
    records: [],
    connected: false,
    traced: false,
    // The hypervisor's exact counts, {time, totals}, the newest and one per batch (to scrub back),
    // and what the timeline misses: records the ring lost, records the server did not send.
    totals: null,
    snapshots: [],
    lost: 0,
    skipped: 0,
    // Records sent but no longer held: before this page connected, or beyond MAX_RECORDS.
    dropped: 0,
  });
  useEffect(() => {
    const es = new EventSource('/api/events');
    const seqOf = (d) => (typeof d.seq === 'number' ? d.seq : 0);
    es.addEventListener('hello', (ev) => {
      const d = JSON.parse(ev.data);
      const totals = d.totals ? { time: d.time, totals: d.totals } : null;
      setView((v) => ({
        ...v,
        connected: true,
        title: d.title,
        traced: d.traced,
        state: d.state ?? v.state,
        seq: seqOf(d),
        records: d.records.slice(-MAX_RECORDS),
        dropped: (d.evicted ?? 0) + Math.max(0, d.records.length - MAX_RECORDS),
        totals,
        snapshots: totals ? [totals] : [],
        lost: d.lost ?? 0,
        skipped: d.skipped ?? 0,
      }));
    });
    es.addEventListener('state', (ev) => {
      const d = JSON.parse(ev.data);
      setView((v) => ({ ...v, state: d.state, seq: Math.max(v.seq, seqOf(d)) }));
    });
    es.addEventListener('hypercalls', (ev) => {
      const d = JSON.parse(ev.data);
      setView((v) => {
        const records = v.records.concat(d.records);
        const snap = { time: d.time, totals: d.totals };
        const snapshots = v.snapshots.concat([snap]);
        return {
          ...v,
          records: records.length > MAX_RECORDS ? records.slice(-MAX_RECORDS) : records,
          dropped: v.dropped + Math.max(0, records.length - MAX_RECORDS),
          totals: newer(v.totals, snap),
          snapshots: snapshots.length > MAX_SNAPSHOTS ? snapshots.slice(-MAX_SNAPSHOTS) : snapshots,
          seq: Math.max(v.seq, seqOf(d)),
          lost: d.lost,
          skipped: d.skipped,
        };
      });
    });
    es.onerror = () => setView((v) => ({ ...v, connected: false }));
    es.onopen = () => setView((v) => ({ ...v, connected: true }));
    return () => es.close();
  }, []);
  return view;
}

// ---- domains and grant tables ------------------------------------------------------------------

function EntryRow({ t, e, selected, onSelect }) {
  const mapped = (e.status & 0x18) !== 0;
  return html`<tr class=${`entry${selected ? ' selected' : ''}${mapped ? ' mapped' : ''}`}
    data-testid=${`entry-d${t.domid}-${e.ref}`} data-entry=${`${t.domid}:${e.ref}`}
    onClick=${() => onSelect({ domid: t.domid, ref: e.ref })}>
    <td class="mono">${e.ref}</td>
    <td>d${e.domid}</td>
    <td class="mono">${e.transDomid !== undefined ? `d${e.transDomid}:ref ${e.frame}` : hex(e.frame)}</td>
    <td class="flags mono" data-testid="flags">${t.version === 1 ? e.flagNames.join('|') : e.flagNames.filter((n) => n !== 'reading' && n !== 'writing').join('|')}${t.version === 2 && e.status ? `|${statusText(e.status)}` : ''}</td>
    <td class="mono">${statusText(e.status)}</td>
    <td class="mono" title="host write / host read / device write / device read">${pinsText(e)}</td>
    <td class="mono">${e.active ? hex(e.active.mfn) : '-'}</td>
  </tr>`;
}

function Domain({ t, channels, selected, onSelect }) {
  const mine = channels.filter((c) => c.domid === t.domid);
  return html`<div class="domain" data-testid=${`domain-d${t.domid}`} data-domid=${t.domid}>
    <h3><span class="id">d${t.domid}</span>
      ${t.kind !== 'unknown' ? html`<span class="badge">${t.kind}</span>` : null}
      <span class="badge">v${t.version}</span>
      ${t.dying ? html`<span class="badge dying">dying</span>` : null}
      <span class="muted">${t.frames}/${t.maxFrames} frames${t.version === 2 ? `, ${t.statusFrames} status` : ''}, maptrack ${t.maptrackFrames}/${t.maxMaptrackFrames}</span></h3>
    <div class="muted counts-line" data-testid=${`domain-counts-d${t.domid}`}>${t.entries.length} entries in use, ${t.entries.filter((e) => e.active).length} pinned${t.mappings.length > 0 ? `, ${t.mappings.length} mappings held` : ''}</div>
    ${
      t.entries.length === 0
        ? null
        : html`<div class="scroll entries"><table><thead><tr><th>ref</th><th>grantee</th><th>frame</th><th>flags</th><th>status</th><th>pins</th><th>mfn</th></tr></thead>
        <tbody>${t.entries.map((e) => html`<${EntryRow} key=${e.ref} t=${t} e=${e} selected=${selected?.domid === t.domid && selected?.ref === e.ref} onSelect=${onSelect} />`)}</tbody></table></div>`
    }
    ${
      t.mappings.length > 0
        ? html`<div class="scroll mappings"><table><thead><tr><th>handle</th><th>maps</th><th>ref</th><th>flags</th></tr></thead><tbody>
        ${t.mappings.map(
          (
            m,
          ) => html`<tr key=${m.handle} data-testid=${`mapping-d${t.domid}-${m.handle}`} data-map=${`${t.domid}:${m.handle}`}>
          <td class="mono">${m.handle}</td><td>d${m.granter}</td><td class="mono">${m.ref}</td><td class="mono">${m.flags.join('|')}</td></tr>`,
        )}
        </tbody></table></div>`
        : null
    }
    ${
      mine.length > 0
        ? html`<div class="muted mono">${mine.map((c) => html`<div key=${c.port} data-testid=${`evtchn-d${c.domid}-${c.port}`}>port ${c.port}: ${c.state}${c.peer ? ` ⇄ d${c.peer.domid}:${c.peer.port}` : ''}${c.remoteDomid !== undefined ? ` for d${c.remoteDomid}` : ''}${c.virq !== undefined ? ` virq ${c.virq}` : ''}${c.xen ? ' (Xen)' : ''}</div>`)}</div>`
        : null
    }
  </div>`;
}

/**
 * Arrows: each mapping from the grantee's mapping row to the granter's entry;
 * event channels between domain headers. A row scrolled out of its table's box
 * is pointed at from the box's edge, the arrow drawn faint; scrolling or
 * resizing draws them again.
 */
function Overlay({ stage, state }) {
  const [paths, setPaths] = useState([]);
  const [moved, setMoved] = useState(0);
  useEffect(() => {
    const root = stage.current;
    if (!root) return;
    let frame = 0;
    const again = () => {
      if (frame === 0)
        frame = requestAnimationFrame(() => {
          frame = 0;
          setMoved((n) => n + 1);
        });
    };
    // Scroll events do not bubble: caught on the way down.
    root.addEventListener('scroll', again, true);
    window.addEventListener('resize', again);
    return () => {
      root.removeEventListener('scroll', again, true);
      window.removeEventListener('resize', again);
      cancelAnimationFrame(frame);
    };
  }, []);
  useLayoutEffect(() => {
    const root = stage.current;
    if (!root) return;
    const box = root.getBoundingClientRect();
    const at = (el, side) => {
      const r = el.getBoundingClientRect();
      let y = r.top + r.height / 2;
      let hidden = false;
      const scroller = el.closest('.scroll');
      if (scroller) {
        const sb = scroller.getBoundingClientRect();
        const top = sb.top + (scroller.querySelector('thead')?.getBoundingClientRect().height ?? 0);
        if (y < top) {
          y = top;
          hidden = true;
        } else if (y > sb.bottom) {
          y = sb.bottom;
          hidden = true;
        }
      }
      return { x: (side === 'left' ? r.left : r.right) - box.left, y: y - box.top, r, hidden };
    };
    const out = [];
    for (const t of state.tables) {
      for (const m of t.mappings) {
        const from = root.querySelector(`[data-map="${t.domid}:${m.handle}"]`);
        const to = root.querySelector(`[data-entry="${m.granter}:${m.ref}"]`);
        if (!from || !to) continue;
        // Short arrows: from the side of the mapping row that faces the entry.
        const fr = from.getBoundingClientRect();
        const tr = to.getBoundingClientRect();
        let a;
        let b;
        let d;
        if (tr.left >= fr.right) {
          a = at(from, 'right');
          b = at(to, 'left');
          const bend = Math.max(30, (b.x - a.x) / 3);
          d = `M${a.x},${a.y} C${a.x + bend},${a.y} ${b.x - bend},${b.y} ${b.x - 2},${b.y}`;
        } else if (tr.right <= fr.left) {
          a = at(from, 'left');
          b = at(to, 'right');
          const bend = Math.max(30, (a.x - b.x) / 3);
          d = `M${a.x},${a.y} C${a.x - bend},${a.y} ${b.x + bend},${b.y} ${b.x + 2},${b.y}`;
        } else {
          a = at(from, 'left');
          b = at(to, 'left');
          d = `M${a.x},${a.y} C${a.x - 40},${a.y} ${b.x - 40},${b.y} ${b.x - 2},${b.y}`;
        }
        out.push({
          key: `map-${t.domid}-${m.handle}`,
          cls: a.hidden || b.hidden ? 'map hidden' : 'map',
          testid: `arrow-d${t.domid}-d${m.granter}-${m.ref}`,
          d,
        });
      }
    }
    const seen = new Set();
    for (const c of state.eventChannels) {
      if (c.state !== 'interdomain' || !c.peer || c.peer.domid === c.domid) continue;
      const key = [c.domid, c.port, c.peer.domid, c.peer.port].join(':');
      const back = [c.peer.domid, c.peer.port, c.domid, c.port].join(':');
      if (seen.has(back)) continue;
      seen.add(key);
      const a = root.querySelector(`[data-domid="${c.domid}"] h3`);
      const b = root.querySelector(`[data-domid="${c.peer.domid}"] h3`);
      if (!a || !b) continue;
      const pa = at(a, 'right');
      const pb = at(b, 'right');
      const lift = 18 + (seen.size % 4) * 6;
      out.push({
        key: `evt-${key}`,
        cls: 'evtchn',
        testid: `evtchn-link-d${c.domid}-d${c.peer.domid}`,
        d: `M${pa.x - 30},${pa.r.top - box.top} C${pa.x - 30},${pa.r.top - box.top - lift} ${pb.x - 30},${pb.r.top - box.top - lift} ${pb.x - 30},${pb.r.top - box.top}`,
      });
    }
    setPaths(out);
  }, [state, moved]);
  return html`<svg class="overlay"><defs><marker id="head" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#d9480f" /></marker></defs>
    ${paths.map((p) => html`<path key=${p.key} class=${p.cls} data-testid=${p.testid} d=${p.d} marker-end=${p.cls.startsWith('map') ? 'url(#head)' : null} />`)}</svg>`;
}

// ---- entry detail: raw bytes and each bit ------------------------------------------------------

function Detail({ state, selected }) {
  if (!selected)
    return html`<div class="panel detail muted">Click an entry to see its bytes and what each bit means.</div>`;
  const t = state.tables.find((x) => x.domid === selected.domid);
  const e = t?.entries.find((x) => x.ref === selected.ref);
  if (!t || !e)
    return html`<div class="panel detail muted">d${selected.domid} ref ${selected.ref} is no longer in use.</div>`;
  const parts = entryBytes(t, e);
  const type = e.flags & 3;
  return html`<div class="panel detail" data-testid="entry-detail">
    <div><b>d${t.domid} ref ${e.ref}</b> — grant_entry_v${t.version} (${t.version === 1 ? 8 : 16} bytes, little-endian): ${TYPES[type]}</div>
    <div class="bytes mono" data-testid="entry-bytes">${parts.map((p) => html`<span title=${p.name}>${p.b.map((b) => b.toString(16).padStart(2, '0')).join(' ')}</span>`)}</div>
    <div class="muted">${parts.map((p) => p.name).join(' · ')}</div>
    <table><thead><tr><th>bit</th><th>name</th><th>value</th><th>meaning</th></tr></thead><tbody>
      ${FLAG_BITS.map(([bit, name, meaning]) => {
        const v = bit === 0 ? type : (e.flags >> bit) & 1;
        return html`<tr class=${v ? 'set' : 'clear'}><td class="mono">${bit === 0 ? '0-1' : bit}</td><td class="mono">${name}</td><td class="mono">${bit === 0 ? `${v} (${TYPES[v]})` : v}</td><td>${meaning}</td></tr>`;
      })}
      ${t.version === 2 ? html`<tr class=${e.status ? 'set' : 'clear'}><td class="mono">status</td><td class="mono">grant_status_t</td><td class="mono">${hex(e.status, 4)}</td><td>v2 status word: ${statusText(e.status)} (GTF_reading 0x8, GTF_writing 0x10)</td></tr>` : null}
    </tbody></table>
    <div>domid: d${e.domid} (the grantee) · frame: ${hex(e.frame)}${e.subPage ? ` · sub-page [${e.subPage.offset}, +${e.subPage.length})` : ''}</div>
    ${e.active ? html`<div>active entry: pin ${hex(e.active.pin, 8)} (host w/r ${e.active.pins.hostWrite}/${e.active.pins.hostRead}, device w/r ${e.active.pins.devWrite}/${e.active.pins.devRead}), mapped by d${e.active.grantee}, MFN ${hex(e.active.mfn)}</div>` : html`<div class="muted">no active entry: nobody has it pinned</div>`}
  </div>`;
}

// ---- xenstore -------------------------------------------------------------------------------

function Xenstore({ nodes }) {
  if (nodes === null) return html`<div class="panel muted">this host runs no xenstore</div>`;
  return html`<div class="panel" data-testid="xenstore">${nodes
    .filter((n) => n.path.startsWith('/'))
    .map((n) => {
      const depth = n.path === '/' ? 0 : n.path.split('/').length - 1;
      const name = n.path === '/' ? '/' : n.path.slice(n.path.lastIndexOf('/') + 1);
      return html`<div class="xs-node mono" key=${n.path} style=${`padding-left:${depth * 12}px`} title=${`${n.path} (${n.perms.join(' ')})`}>${name}${n.value ? html` = <span class="val">${JSON.stringify(n.value)}</span>` : null}</div>`;
    })}</div>`;
}

// ---- hypercall timeline ---------------------------------------------------------------------

function clock(ms) {
  return new Date(ms).toISOString().slice(11, 23);
}

function n(x) {
  return x.toLocaleString('en-US');
}

/** The newest reading of the counters taken at or before `end` (the oldest if none is). */
function snapshotAt(snapshots, end) {
  let best = snapshots[0] ?? null;
  for (const s of snapshots) if (s.time <= end) best = s;
  return best;
}

/**
 * The hypercall timeline: the trace's records (a sample when the ring lost
 * some or the server skipped some), and the hypervisor's exact counts beside
 * them. Pausing freezes both; the slider then scrubs back through what was
 * frozen, the counts with it (the reading taken nearest before the cursor).
 */
function Timeline({ view }) {
  const [frozen, setFrozen] = useState(null);
  const [cursor, setCursor] = useState(1000);
  const paused = frozen !== null;
  const live = {
    records: view.records,
    snapshots: view.snapshots,
    totals: view.totals,
    lost: view.lost,
    skipped: view.skipped,
    dropped: view.dropped,
  };
  const at = paused ? frozen : live;
  const list = at.records;
  const togglePause = () => {
    setFrozen(paused ? null : live);
    setCursor(1000);
  };
  if (!view.traced) return html`<div class="panel muted">no hypercall trace for this source</div>`;
  const t0 = list.length > 0 ? list[0][0] : 0;
  const t1 = list.length > 0 ? list[list.length - 1][0] : 0;
  const span = Math.max(1, t1 - t0);
  // The window: the last 2 seconds up to the cursor (scrubbing moves it back).
  const end = t0 + (span * cursor) / 1000;
  const width = Math.min(2000, span);
  const start = end - width;
  const shown = list.filter((r) => r[0] >= start && r[0] <= end);
  const lanes = [...new Set(shown.map((r) => `d${r[1]} ${r[2]}`))].sort();
  const laneH = 14;
  const W = 1000;
  const left = 230;
  const H = Math.max(1, lanes.length) * laneH + 18;
  const x = (tm) => left + ((tm - start) / width) * (W - left - 10);
  const last = shown.slice(-8).reverse();
  // The sample up to the cursor, by domain and op: how many records, the last return.
  const sampled = new Map();
  for (const r of list) {
    if (r[0] > end) break;
    const k = `d${r[1]} ${r[2]}`;
    const c = sampled.get(k) ?? { n: 0, last: '' };
    c.n++;
    c.last = r[3];
    sampled.set(k, c);
  }
  // The exact counts: live, frozen at the pause, or as they stood at the cursor.
  const reading = paused && cursor < 1000 ? snapshotAt(at.snapshots, end) : at.totals;
  const totals = reading?.totals ?? null;
  const rows = [];
  if (totals) {
    for (const d of totals.domains) {
      rows.push({ key: `d${d.domid}`, label: `d${d.domid}, all hypercalls`, c: d, cls: 'dom' });
      for (const o of totals.ops.filter((o) => o.domid === d.domid))
        rows.push({ key: `d${o.domid} ${o.op}`, label: `d${o.domid} ${o.op}`, c: o, cls: '' });
    }
  }
  const domainEvents = [...sampled.keys()].filter((k) => / domain (created|destroyed)$/.test(k));
  // What the timeline misses of the hypervisor's count: said in so many words.
  const misses = totals
    ? [
        totals.lost > 0 ? html`the trace ring lost <b>${n(totals.lost)}</b> records` : null,
        at.skipped > 0 ? html`${n(at.skipped)} were drained but not sent (at most 500 per 100 ms)` : null,
        at.dropped > 0
          ? html`${n(at.dropped)} older ones are no longer held (the page keeps ${n(MAX_RECORDS)})`
          : null,
      ].filter(Boolean)
    : [];
  return html`<div data-testid="timeline" data-paused=${paused ? '1' : '0'} data-end=${end} data-last=${shown.length > 0 ? shown[shown.length - 1][0] : ''} data-shown=${shown.length} data-records=${list.length}>
    <div class="timeline-controls">
      <button type="button" data-testid="pause" onClick=${togglePause}>${paused ? 'resume' : 'pause'}</button>
      <input type="range" min="0" max="1000" value=${cursor} disabled=${!paused} data-testid="scrub" onInput=${(ev) => setCursor(Number(ev.currentTarget.value))} />
      <span class="muted">${n(list.length)} records, showing ${shown.length} in ${(width / 1000).toFixed(2)} s ${paused ? '(paused: drag to scrub back)' : ''}</span>
    </div>
    ${
      totals
        ? html`<div class=${`honest${misses.length > 0 ? ' sampled' : ''}`} data-testid="hypercall-totals" data-lost=${totals.lost} data-skipped=${at.skipped}>
          <b data-testid="total-calls" data-calls=${totals.calls}>${n(totals.calls)}</b> hypercalls counted by the hypervisor (exact), <span data-testid="total-failed">${n(totals.failed)}</span> failed${reading && paused ? `, as of ${clock(reading.time)}` : ''}.
          ${
            misses.length > 0
              ? html` The timeline is a sample of them: ${misses.map((m, i) => html`${i > 0 ? (i === misses.length - 1 ? ', and ' : ', ') : ''}${m}`)}.`
              : html` The timeline has a record of each (0 lost).`
          }
        </div>`
        : null
    }
    ${
      list.length === 0
        ? html`<div class="panel muted">no hypercalls yet</div>`
        : html`<svg class="timeline" viewBox=${`0 0 ${W} ${H}`} style=${`height:${H}px`}>
      ${lanes.map((l, i) => html`<text key=${l} x="4" y=${i * laneH + 11}>${l}</text>`)}
      ${shown.map((r, i) => {
        const lane = lanes.indexOf(`d${r[1]} ${r[2]}`);
        return html`<rect key=${i} x=${x(r[0])} y=${lane * laneH + 3} width="2" height="9" class=${r[3].startsWith('-') ? 'err' : 'ok'}><title>${`d${r[1]} ${r[2]} → ${r[3]}`}</title></rect>`;
      })}
      <text x=${left} y=${H - 4}>${clock(start)}</text>
      <text x=${W - 90} y=${H - 4}>${clock(end)}</text>
    </svg>`
    }
    <table class="counts" data-testid="counts"><thead><tr><th>domain, hypercall</th><th>calls (exact)</th><th>failed (exact)</th><th>records in the timeline</th><th>last return seen</th></tr></thead><tbody>
      ${rows.map(
        (r) =>
          html`<tr key=${r.key} class=${r.cls} data-testid=${`count-${r.key}`}><td class="mono">${r.label}</td><td class="mono calls">${n(r.c.calls)}</td><td class="mono failed">${n(r.c.failed)}</td><td class="mono sampled">${r.cls === 'dom' ? '' : n(sampled.get(r.key)?.n ?? 0)}</td><td class="mono">${r.cls === 'dom' ? '' : (sampled.get(r.key)?.last ?? '')}</td></tr>`,
      )}
      ${totals && totals.unplaced > 0 ? html`<tr class="muted"><td colspan="5">${n(totals.unplaced)} calls of ops the hypervisor's table had no room for: in their domain's total only</td></tr>` : null}
      ${domainEvents.map((k) => html`<tr key=${k} class="muted"><td class="mono">${k}</td><td></td><td></td><td class="mono sampled">${sampled.get(k).n}</td><td></td></tr>`)}
    </tbody></table>
    <div class="mono muted" data-testid="timeline-last">${last.map((r, i) => html`<div key=${i}>${clock(r[0])} d${r[1]} ${r[2]} → <span class=${r[3].startsWith('-') ? 'err' : ''}>${r[3]}</span></div>`)}</div>
  </div>`;
}

// ---- the page ----------------------------------------------------------------------------------

function App() {
  const view = useHost();
  const [selected, setSelected] = useState(null);
  const stage = useRef(null);
  const s = view.state;
  return html`<div>
    <header><h1>gnttab</h1><span>${view.title}</span>
      <span class="muted" data-testid="conn">${view.connected ? 'live' : 'disconnected'}</span>
      <span class="muted">seq <span data-testid="seq" data-seq=${view.seq}>${view.seq}</span></span>
      ${view.lost > 0 ? html`<span class="muted" data-testid="header-lost">${n(view.lost)} trace records lost: the timeline is a sample</span>` : null}
      ${s && s.invariants.length > 0 ? html`<span style="color:#ff8787">${s.invariants.length} invariants violated</span>` : null}</header>
    ${
      s === null
        ? html`<p class="loading">waiting for the host's first state&hellip;</p>`
        : html`<section>
          <h2>Domains and grant tables <span class="legend muted"><span><i class="swatch" style="background:#d9480f"></i>mapping (grantee → granter's entry)</span><span><i class="swatch" style="background:#1864ab"></i>event channel</span></span></h2>
          <div class="stage" ref=${stage}>
            <div class="domains">${s.tables.map((t) => html`<${Domain} key=${t.domid} t=${t} channels=${s.eventChannels} selected=${selected} onSelect=${setSelected} />`)}</div>
            <${Overlay} stage=${stage} state=${s} />
          </div>
        </section>
        <section class="columns">
          <div><h2>Entry</h2><${Detail} state=${s} selected=${selected} /></div>
          <div><h2>Xenstore</h2><${Xenstore} nodes=${s.xenstore} /></div>
        </section>
        <section><h2>Hypercalls</h2><${Timeline} view=${view} /></section>`
    }
  </div>`;
}

const root = document.getElementById('app');
root.textContent = '';
render(html`<${App} />`, root);
