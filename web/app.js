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

function useHost() {
  const [view, setView] = useState({
    state: null,
    seq: 0,
    title: '',
    records: [],
    connected: false,
    lost: 0,
    traced: false,
  });
  useEffect(() => {
    const es = new EventSource('/api/events');
    const seqOf = (d) => (typeof d.seq === 'number' ? d.seq : 0);
    es.addEventListener('hello', (ev) => {
      const d = JSON.parse(ev.data);
      setView((v) => ({
        ...v,
        connected: true,
        title: d.title,
        traced: d.traced,
        state: d.state ?? v.state,
        seq: seqOf(d),
        records: d.records.slice(-MAX_RECORDS),
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
        return {
          ...v,
          records: records.length > MAX_RECORDS ? records.slice(-MAX_RECORDS) : records,
          seq: Math.max(v.seq, seqOf(d)),
          lost: d.lost,
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
    ${
      t.entries.length === 0
        ? html`<div class="muted">no entries in use</div>`
        : html`<table><thead><tr><th>ref</th><th>grantee</th><th>frame</th><th>flags</th><th>status</th><th>pins</th><th>mfn</th></tr></thead>
        <tbody>${t.entries.map((e) => html`<${EntryRow} key=${e.ref} t=${t} e=${e} selected=${selected?.domid === t.domid && selected?.ref === e.ref} onSelect=${onSelect} />`)}</tbody></table>`
    }
    ${
      t.mappings.length > 0
        ? html`<table class="mappings"><thead><tr><th>handle</th><th>maps</th><th>ref</th><th>flags</th></tr></thead><tbody>
        ${t.mappings.map(
          (
            m,
          ) => html`<tr key=${m.handle} data-testid=${`mapping-d${t.domid}-${m.handle}`} data-map=${`${t.domid}:${m.handle}`}>
          <td class="mono">${m.handle}</td><td>d${m.granter}</td><td class="mono">${m.ref}</td><td class="mono">${m.flags.join('|')}</td></tr>`,
        )}
        </tbody></table>`
        : null
    }
    ${
      mine.length > 0
        ? html`<div class="muted mono">${mine.map((c) => html`<div key=${c.port} data-testid=${`evtchn-d${c.domid}-${c.port}`}>port ${c.port}: ${c.state}${c.peer ? ` ⇄ d${c.peer.domid}:${c.peer.port}` : ''}${c.remoteDomid !== undefined ? ` for d${c.remoteDomid}` : ''}${c.virq !== undefined ? ` virq ${c.virq}` : ''}${c.xen ? ' (Xen)' : ''}</div>`)}</div>`
        : null
    }
  </div>`;
}

/** Arrows: each mapping from the grantee's mapping row to the granter's entry; event channels between domain headers. */
function Overlay({ stage, state }) {
  const [paths, setPaths] = useState([]);
  useLayoutEffect(() => {
    const root = stage.current;
    if (!root) return;
    const box = root.getBoundingClientRect();
    const at = (el, side) => {
      const r = el.getBoundingClientRect();
      return { x: (side === 'left' ? r.left : r.right) - box.left, y: r.top + r.height / 2 - box.top, r };
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
        let d;
        if (tr.left >= fr.right) {
          const a = at(from, 'right');
          const b = at(to, 'left');
          const bend = Math.max(30, (b.x - a.x) / 3);
          d = `M${a.x},${a.y} C${a.x + bend},${a.y} ${b.x - bend},${b.y} ${b.x - 2},${b.y}`;
        } else if (tr.right <= fr.left) {
          const a = at(from, 'left');
          const b = at(to, 'right');
          const bend = Math.max(30, (a.x - b.x) / 3);
          d = `M${a.x},${a.y} C${a.x - bend},${a.y} ${b.x + bend},${b.y} ${b.x + 2},${b.y}`;
        } else {
          const a = at(from, 'left');
          const b = at(to, 'left');
          d = `M${a.x},${a.y} C${a.x - 40},${a.y} ${b.x - 40},${b.y} ${b.x - 2},${b.y}`;
        }
        out.push({
          key: `map-${t.domid}-${m.handle}`,
          cls: 'map',
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
  }, [state]);
  return html`<svg class="overlay"><defs><marker id="head" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#d9480f" /></marker></defs>
    ${paths.map((p) => html`<path key=${p.key} class=${p.cls} data-testid=${p.testid} d=${p.d} marker-end=${p.cls === 'map' ? 'url(#head)' : null} />`)}</svg>`;
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

function Timeline({ records, traced }) {
  const [paused, setPaused] = useState(false);
  const [frozen, setFrozen] = useState([]);
  const [cursor, setCursor] = useState(1000);
  const list = paused ? frozen : records;
  const togglePause = () => {
    if (!paused) setFrozen(records);
    setPaused(!paused);
    setCursor(1000);
  };
  if (!traced) return html`<div class="panel muted">no hypercall trace for this source</div>`;
  if (list.length === 0) return html`<div class="panel muted">no hypercalls yet</div>`;
  const t0 = list[0][0];
  const t1 = list[list.length - 1][0];
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
  // Every record so far (or up to the cursor), by domain and op: how many, how many failed.
  const counts = new Map();
  for (const r of list) {
    if (r[0] > end) break;
    const k = `d${r[1]} ${r[2]}`;
    const c = counts.get(k) ?? { ok: 0, err: 0, last: '' };
    if (r[3].startsWith('-')) c.err++;
    else c.ok++;
    c.last = r[3];
    counts.set(k, c);
  }
  return html`<div data-testid="timeline">
    <div class="timeline-controls">
      <button type="button" data-testid="pause" onClick=${togglePause}>${paused ? 'resume' : 'pause'}</button>
      <input type="range" min="0" max="1000" value=${cursor} disabled=${!paused} data-testid="scrub" onInput=${(ev) => setCursor(Number(ev.currentTarget.value))} />
      <span class="muted">${list.length} hypercalls, showing ${shown.length} in ${(width / 1000).toFixed(2)} s ${paused ? '(paused: drag to scrub back)' : ''}</span>
    </div>
    <svg class="timeline" viewBox=${`0 0 ${W} ${H}`} style=${`height:${H}px`}>
      ${lanes.map((l, i) => html`<text key=${l} x="4" y=${i * laneH + 11}>${l}</text>`)}
      ${shown.map((r, i) => {
        const lane = lanes.indexOf(`d${r[1]} ${r[2]}`);
        return html`<rect key=${i} x=${x(r[0])} y=${lane * laneH + 3} width="2" height="9" class=${r[3].startsWith('-') ? 'err' : 'ok'}><title>${`d${r[1]} ${r[2]} → ${r[3]}`}</title></rect>`;
      })}
      <text x=${left} y=${H - 4}>${new Date(start).toISOString().slice(11, 23)}</text>
      <text x=${W - 90} y=${H - 4}>${new Date(end).toISOString().slice(11, 23)}</text>
    </svg>
    <table class="counts" data-testid="counts"><thead><tr><th>domain, hypercall</th><th>ok</th><th>failed</th><th>last return</th></tr></thead><tbody>
      ${[...counts].sort().map(([k, c]) => html`<tr key=${k}><td class="mono">${k}</td><td class="mono">${c.ok}</td><td class="mono">${c.err}</td><td class="mono">${c.last}</td></tr>`)}
    </tbody></table>
    <div class="mono muted">${last.map((r, i) => html`<div key=${i}>${new Date(r[0]).toISOString().slice(11, 23)} d${r[1]} ${r[2]} → <span class=${r[3].startsWith('-') ? 'err' : ''}>${r[3]}</span></div>`)}</div>
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
      ${view.lost > 0 ? html`<span class="muted">${view.lost} trace records lost</span>` : null}
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
        <section><h2>Hypercalls</h2><${Timeline} records=${view.records} traced=${view.traced} /></section>`
    }
  </div>`;
}

const root = document.getElementById('app');
root.textContent = '';
render(html`<${App} />`, root);
