// The small xenstore (issue 4): the service alone (src/io/xenstore/xenstored.ts,
// messages in xs_wire.h form handed straight to it), then guests talking to it
// through their ring page and event channel in single-thread mode
// (src/io/xenstore/client.ts over src/host/xenstore-service.ts).
//
// Behaviour follows Xen's C xenstored (tools/xenstored/core.c, watch.c,
// transaction.c, domain.c) and xs_wire.h; each test names the function it
// follows. The toolstack's part (ring page, grant ref 1, event channel) follows
// xen-grant-tables.md §11 and Xen's dom0less alloc_xenstore_page/evtchn.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { GuestContext } from '../../src/guest/context.ts';
import { EventChannels } from '../../src/guest/events.ts';
import { XENSTORE_RING_VA } from '../../src/guest/layout.ts';
import { XenError } from '../../src/guest/xen-error.ts';
import {
  __HYPERVISOR_event_channel_op,
  __HYPERVISOR_grant_table_op,
  type DomainHandle,
  decodeStruct,
  EVTCHNOP_bind_vcpu,
  EVTCHNOP_close,
  EVTCHNOP_send,
  EVTCHNSTAT_interdomain,
  encodeStruct,
  evtchn_bind_vcpu,
  evtchn_close,
  evtchn_send,
  GNTMAP_host_map,
  GNTMAP_readonly,
  GNTST_okay,
  GNTTABOP_map_grant_ref,
  GNTTABOP_unmap_grant_ref,
  GTF_permit_access,
  gnttab_map_grant_ref,
  gnttab_unmap_grant_ref,
  Host,
  XEN_EINVAL,
} from '../../src/index.ts';
import { XsError } from '../../src/io/xenstore/api.ts';
import { XsRingClient } from '../../src/io/xenstore/client.ts';
import {
  concatBytes,
  decodeMessage,
  encodeMessage,
  fromBytes,
  nulStrings,
  splitStrings,
  toBytes,
  XENSTORE_CONNECTED,
  XENSTORE_ERROR_PROTO,
  XENSTORE_ERROR_RINGIDX,
  XENSTORE_PAYLOAD_MAX,
  XENSTORE_SERVER_FEATURE_ERROR,
  XENSTORE_SERVER_FEATURE_WATCHDEPTH,
  XS_CONTROL,
  XS_DIRECTORY,
  XS_DIRECTORY_PART,
  XS_ERROR,
  XS_GET_DOMAIN_PATH,
  XS_GET_FEATURE,
  XS_GET_PERMS,
  XS_INTRODUCE,
  XS_IS_DOMAIN_INTRODUCED,
  XS_MKDIR,
  XS_READ,
  XS_RELEASE,
  XS_RESET_WATCHES,
  XS_RING_CONNECTION,
  XS_RING_ERROR,
  XS_RING_REQ_PROD,
  XS_RING_SERVER_FEATURES,
  XS_RM,
  XS_SET_PERMS,
  XS_TRANSACTION_END,
  XS_TRANSACTION_START,
  XS_UNWATCH,
  XS_WATCH,
  XS_WATCH_EVENT,
  XS_WRITE,
  XSD_ERRORS,
  type XsMessage,
} from '../../src/io/xenstore/wire.ts';
import { XenStore, XS_QUOTA, type XsConnection } from '../../src/io/xenstore/xenstored.ts';

// ---- the service alone --------------------------------------------------------------------------

/** A store with domains introduced, and synchronous request helpers. */
class Bench {
  readonly store: XenStore;
  private readonly inbox = new Map<XsConnection, XsMessage[]>();
  private reqId = 1;

  constructor(domids: number[] = [0, 1, 2]) {
    this.store = new XenStore();
    for (const id of domids) this.attach(this.store.introduceDomain(id));
  }

  attach(c: XsConnection): XsConnection {
    this.inbox.set(c, []);
    c.onOutput = () => {
      for (const m of c.out.splice(0)) this.inbox.get(c)!.push(decodeMessage(m.bytes)!);
    };
    return c;
  }

  dom(domid: number): XsConnection {
    return this.store.domainConnection(domid)!;
  }

  tool(): XsConnection {
    return this.attach(this.store.connectTool());
  }

  /** One request; its reply (events stay queued for events()). */
  call(c: XsConnection, type: number, args: (string | Uint8Array)[] | Uint8Array, txId = 0): XsMessage {
    const payload =
      args instanceof Uint8Array
        ? args
        : concatBytes(...args.map((a) => (typeof a === 'string' ? nulStrings(a) : a)));
    const reqId = this.reqId++;
    this.store.handle(c, { type, reqId, txId, payload });
    const box = this.inbox.get(c)!;
    const i = box.findIndex((m) => m.type !== XS_WATCH_EVENT && m.reqId === reqId);
    assert.ok(i >= 0, `no reply to request ${reqId} of type ${type}`);
    const [m] = box.splice(i, 1);
    assert.equal(m!.txId, txId, 'the reply echoes tx_id');
    return m!;
  }

  /** The watch events queued for c, taken: [path, token]. */
  events(c: XsConnection): [string, string][] {
    const box = this.inbox.get(c)!;
    const ev = box.filter((m) => m.type === XS_WATCH_EVENT);
    this.inbox.set(
      c,
      box.filter((m) => m.type !== XS_WATCH_EVENT),
    );
    for (const m of ev) assert.equal(m.reqId, 0);
    return ev.map((m) => splitStrings(m.payload) as [string, string]);
  }

  read(c: XsConnection, path: string, txId = 0): string {
    return val(this.call(c, XS_READ, [path], txId));
  }
  write(c: XsConnection, path: string, value: string, txId = 0): string {
    return ack(this.call(c, XS_WRITE, [path, toBytes(value)], txId));
  }
  mkdir(c: XsConnection, path: string, txId = 0): string {
    return ack(this.call(c, XS_MKDIR, [path], txId));
  }
  rm(c: XsConnection, path: string, txId = 0): string {
    return ack(this.call(c, XS_RM, [path], txId));
  }
  dir(c: XsConnection, path: string, txId = 0): string[] | string {
    const m = this.call(c, XS_DIRECTORY, [path], txId);
    return m.type === XS_ERROR ? `!${errOf(m)}` : splitStrings(m.payload);
  }
  perms(c: XsConnection, path: string): string[] | string {
    const m = this.call(c, XS_GET_PERMS, [path]);
    return m.type === XS_ERROR ? `!${errOf(m)}` : splitStrings(m.payload);
  }
  setPerms(c: XsConnection, path: string, ...perms: string[]): string {
    return ack(this.call(c, XS_SET_PERMS, [path, ...perms]));
  }
  watch(c: XsConnection, path: string, token: string): string {
    return ack(this.call(c, XS_WATCH, [path, token]));
  }
  unwatch(c: XsConnection, path: string, token: string): string {
    return ack(this.call(c, XS_UNWATCH, [path, token]));
  }
  start(c: XsConnection, txId = 0): number | string {
    const m = this.call(c, XS_TRANSACTION_START, [''], txId);
    return m.type === XS_ERROR ? errOf(m) : Number(fromBytes(m.payload.subarray(0, -1)));
  }
  end(c: XsConnection, txId: number, commit: boolean | string): string {
    const arg = typeof commit === 'string' ? commit : commit ? 'T' : 'F';
    return ack(this.call(c, XS_TRANSACTION_END, [arg], txId));
  }

  /** The store's invariants, with every domain of `live` alive. */
  invariants(live: number[] = [...this.liveIds()]): string[] {
    return this.store.checkInvariants((id) => live.includes(id));
  }

  /**
   * Every test's end: the invariants hold; then every domain goes, and no
   * connection, watch, transaction or home is left for any of them.
   */
  finish(): void {
    assert.deepEqual(this.invariants(), []);
    for (const id of [...this.liveIds()]) this.store.releaseDomain(id);
    const st = this.store.stats();
    assert.deepEqual(
      st.connections.filter((c) => c.kind === 'domain'),
      [],
    );
    for (const c of st.connections) assert.equal(c.transactions, 0);
    assert.deepEqual(
      this.store.paths().filter((p) => p.startsWith('/local/domain/')),
      [],
    );
    assert.deepEqual(this.invariants([]), []);
  }

  private *liveIds(): Iterable<number> {
    for (const c of this.store.connections) if (c.kind === 'domain') yield c.domid;
  }
}

/** The error name of an XS_ERROR reply, "OK" otherwise. */
function errOf(m: XsMessage): string {
  if (m.type !== XS_ERROR) return 'OK';
  assert.equal(m.payload[m.payload.length - 1], 0, 'error strings are nul-terminated');
  return fromBytes(m.payload.subarray(0, -1));
}

/** A read's value, or "!ERRNO". */
function val(m: XsMessage): string {
  return m.type === XS_ERROR ? `!${errOf(m)}` : fromBytes(m.payload);
}

/** "OK" (checking the ack payload), or "!ERRNO". */
function ack(m: XsMessage): string {
  if (m.type === XS_ERROR) return `!${errOf(m)}`;
  assert.deepEqual([...m.payload], [...nulStrings('OK')]);
  return 'OK';
}

describe('xenstored alone', () => {
  it('starts with /, /tool/xenstored and the special nodes, all n0 (core.c setup_structure)', () => {
    const s = new XenStore();
    assert.deepEqual(s.paths(), ['/', '/tool', '/tool/xenstored', '@introduceDomain', '@releaseDomain']);
    for (const p of s.paths()) assert.deepEqual(s.node(p)!.perms, [{ id: 0, perms: 0 }]);
    assert.deepEqual(s.checkInvariants(), []);
  });

  it('a domain introduced gets /local/domain/<domid> owned by it, with its domid (issue 4)', () => {
    const b = new Bench([0, 3]);
    const d3 = b.dom(3);
    assert.equal(b.read(d3, '/local/domain/3/domid'), '3');
    assert.equal(b.read(d3, 'domid'), '3', 'relative paths start at the home');
    assert.deepEqual(b.perms(d3, '/local/domain/3'), ['n3']);
    // The frame above the homes is dom0's (inherited from the root).
    assert.deepEqual(b.perms(b.dom(0), '/local/domain'), ['n0']);
    assert.deepEqual(b.dir(b.dom(0), '/local/domain'), ['0', '3']);
    assert.equal(val(b.call(d3, XS_GET_DOMAIN_PATH, ['7'])), '/local/domain/7\0', 'any domid, no check');
    assert.throws(() => b.store.introduceDomain(3), /already introduced/);
    b.finish();
  });

  it('writes, reads, lists and removes; values are bytes, nuls included (core.c do_write/do_read)', () => {
    const b = new Bench();
    const d1 = b.dom(1);
    assert.equal(b.write(d1, 'data/a/b/c', 'deep'), 'OK');
    assert.equal(b.read(d1, '/local/domain/1/data/a/b/c'), 'deep');
    assert.equal(b.read(d1, 'data/a'), '', 'missing parents are created empty');
    assert.deepEqual(b.dir(d1, 'data'), ['a']);
    assert.equal(b.write(d1, 'data/x', ''), 'OK');
    assert.equal(b.write(d1, 'data/y', 'y'), 'OK');
    assert.deepEqual(b.dir(d1, 'data'), ['a', 'x', 'y'], 'children in creation order');
    const raw = new Uint8Array([1, 0, 2, 0xff]);
    assert.equal(ack(b.call(d1, XS_WRITE, [nulStrings('data/bin'), raw])), 'OK');
    assert.deepEqual([...b.call(d1, XS_READ, ['data/bin']).payload], [1, 0, 2, 0xff]);
    assert.equal(b.mkdir(d1, 'data/a'), 'OK', 'mkdir of an existing node is fine');
    assert.equal(b.read(d1, 'data/a/b/c'), 'deep', 'and leaves it alone');
    assert.equal(b.rm(d1, 'data/a'), 'OK');
    assert.equal(b.read(d1, 'data/a/b/c'), '!ENOENT');
    assert.equal(b.read(d1, 'data/a/b'), '!ENOENT');
    assert.deepEqual(b.dir(d1, 'data'), ['x', 'y', 'bin']);
    assert.equal(b.rm(d1, 'data/nothere'), 'OK', 'rm of a missing node whose parent exists: fine');
    assert.equal(b.rm(d1, 'data/no/such'), '!ENOENT', 'missing parent: ENOENT');
    assert.equal(b.rm(b.dom(0), '/'), '!EINVAL', 'the root cannot go');
    b.finish();
  });

  it('rejects bad paths with EINVAL (core.c canonicalize)', () => {
    const b = new Bench();
    const d1 = b.dom(1);
    for (const p of [
      '/a//b',
      '/a/',
      '',
      'data/',
      '/a b',
      '/a\tb',
      '/caf\u00e9',
      '@releaseDomain',
      'x@/../y/.',
    ])
      assert.equal(b.read(d1, p), '!EINVAL', JSON.stringify(p));
    assert.equal(b.write(d1, 'data/a.b', 'v'), '!EINVAL', "'.' is not a node character");
    // An unprivileged domain's paths are limited to XENSTORE_REL_PATH_MAX past its /local/domain/<id>/.
    const long = `data/${'x'.repeat(1000)}/${'y'.repeat(2048 - 5 - 1001)}`;
    assert.equal(long.length, 2048);
    assert.equal(b.write(d1, long, 'v'), 'OK');
    assert.equal(b.write(d1, `${long}y`, 'v'), '!EINVAL');
    assert.equal(b.write(b.dom(0), `/local/domain/1/${long}y`, 'v'), 'OK', 'dom0 has no path quota');
    // onearg: exactly one nul-terminated string.
    assert.equal(errOf(b.call(d1, XS_READ, toBytes('data'))), 'EINVAL', 'no nul');
    assert.equal(errOf(b.call(d1, XS_READ, ['data', 'more'])), 'EINVAL', 'two strings');
    assert.equal(errOf(b.call(d1, XS_WRITE, toBytes('data/novalue'))), 'EINVAL', 'write without a nul');
    b.finish();
  });

  it('permissions: owner and privileged get all, others their entry or the default (core.c perm_for_conn)', () => {
    const b = new Bench([0, 1, 2, 3, 4, 5]);
    const [d0, d1, d2, d3, d4, d5] = [b.dom(0), b.dom(1), b.dom(2), b.dom(3), b.dom(4), b.dom(5)];
    const tool = b.tool();
    const base = '/local/domain/1/data';
    assert.equal(b.mkdir(d1, base), 'OK');
    // The home is n1, so base is too: make the directory readable, then one node per permission.
    assert.equal(b.setPerms(d1, base, 'n1', 'r2', 'r3', 'r4', 'r5'), 'OK');
    assert.equal(b.write(d1, `${base}/k`, 'v'), 'OK');
    assert.equal(b.setPerms(d1, `${base}/k`, 'n1', 'r2', 'w3', 'b4'), 'OK');
    // dom 5 has no entry: the owner entry's "n" applies.
    const matrix: [XsConnection, string, string][] = [
      [d0, 'v', 'OK'],
      [tool, 'v', 'OK'],
      [d1, 'v', 'OK'],
      [d2, 'v', '!EACCES'],
      [d3, '!EACCES', 'OK'],
      [d4, 'v', 'OK'],
      [d5, '!EACCES', '!EACCES'],
    ];
    for (const [c, read, write] of matrix) {
      assert.equal(b.read(c, `${base}/k`), read, `d${c.domid} ${c.kind} read`);
      assert.equal(b.write(c, `${base}/k`, 'v'), write, `d${c.domid} ${c.kind} write`);
    }
    // The default entry: "r1" as owner entry makes everyone without an entry a reader.
    assert.equal(b.setPerms(d1, `${base}/k`, 'r1', 'n2'), 'OK');
    assert.equal(b.read(d5, `${base}/k`), 'v');
    assert.equal(b.read(d2, `${base}/k`), '!EACCES', 'an explicit n beats the default');
    assert.equal(b.write(d5, `${base}/k`, 'x'), '!EACCES');
    // Others may not touch permissions (XS_PERM_OWNER), not even with b.
    assert.equal(b.setPerms(d1, `${base}/k`, 'n1', 'b4'), 'OK');
    assert.equal(b.setPerms(d4, `${base}/k`, 'n1', 'b4', 'r2'), '!EACCES');
    assert.equal(b.rm(d4, `${base}/k`), 'OK', 'rm needs write on the node only');
    b.finish();
  });

  it('errors do not reveal what a caller may not read (core.c errno_from_parents)', () => {
    const b = new Bench();
    const [d1, d2] = [b.dom(1), b.dom(2)];
    assert.equal(b.write(d1, 'data/secret', 's'), 'OK');
    // d2 may read nothing of d1's home: a missing node there is EACCES, not ENOENT.
    assert.equal(b.read(d2, '/local/domain/1/data/secret'), '!EACCES');
    assert.equal(b.read(d2, '/local/domain/1/data/missing'), '!EACCES');
    assert.equal(b.read(d2, '/local/domain/1/no/such/path'), '!EACCES');
    assert.deepEqual(b.dir(d2, '/local/domain/1'), '!EACCES');
    // With read access on the directory, a missing child is ENOENT.
    assert.equal(b.setPerms(d1, 'data', 'n1', 'r2'), 'OK');
    assert.equal(b.read(d2, '/local/domain/1/data/missing'), '!ENOENT');
    assert.equal(b.read(d2, '/local/domain/1/data/secret'), '!EACCES', 'the node keeps its own n1');
    // For writes the ancestor must be writable to learn ENOENT: rm of a missing node.
    assert.equal(b.rm(d2, '/local/domain/1/data/missing'), '!EACCES');
    assert.equal(b.setPerms(d1, 'data', 'n1', 'b2'), 'OK');
    assert.equal(b.rm(d2, '/local/domain/1/data/missing'), 'OK');
    b.finish();
  });

  it('new nodes inherit the parent perms, owned by the unprivileged creator (core.c construct_node)', () => {
    const b = new Bench();
    const [d0, d1, d2] = [b.dom(0), b.dom(1), b.dom(2)];
    assert.equal(b.mkdir(d1, 'shared'), 'OK');
    assert.equal(b.setPerms(d1, 'shared', 'n1', 'b2'), 'OK');
    // d2 may write into d1's directory: what it creates is its own, the rest inherited.
    assert.equal(b.write(d2, '/local/domain/1/shared/from2/leaf', 'x'), 'OK');
    assert.deepEqual(
      b.perms(d1, 'shared/from2'),
      '!EACCES',
      'd1 is no longer the owner, and n2 gives it nothing',
    );
    assert.deepEqual(b.perms(d2, '/local/domain/1/shared/from2'), ['n2', 'b2']);
    assert.deepEqual(b.perms(d2, '/local/domain/1/shared/from2/leaf'), ['n2', 'b2']);
    // Privileged creators keep the parent's owner.
    assert.equal(b.write(d0, '/local/domain/1/shared/from0', 'y'), 'OK');
    assert.deepEqual(b.perms(d0, '/local/domain/1/shared/from0'), ['n1', 'b2']);
    b.finish();
  });

  it('set_perms: owner only, owner unchanged by the unprivileged, valid strings, quota (core.c do_set_perms)', () => {
    const b = new Bench();
    const [d0, d1] = [b.dom(0), b.dom(1)];
    assert.equal(b.write(d1, 'data/k', 'v'), 'OK');
    assert.equal(b.setPerms(d1, 'data/k', 'r2'), '!EPERM', 'giving the node away');
    assert.equal(b.setPerms(d0, 'data/k', 'r2'), '!ENOENT', 'relative to dom0 home: /local/domain/0/data/k');
    assert.equal(b.setPerms(d0, '/local/domain/1/data/k', 'b2', 'r1'), 'OK', 'dom0 may change the owner');
    assert.deepEqual(b.perms(d0, '/local/domain/1/data/k'), ['b2', 'r1']);
    assert.equal(b.read(d1, 'data/k'), 'v', 'd1 reads with its r entry');
    assert.equal(b.write(d1, 'data/k', 'x'), '!EACCES');
    for (const bad of ['x1', 'r', 'r1x', 'r-', ''])
      assert.equal(b.setPerms(d0, '/local/domain/1/data/k', bad), '!EINVAL', JSON.stringify(bad));
    assert.equal(
      ack(b.call(d0, XS_SET_PERMS, ['/local/domain/1/data/k'])),
      '!EINVAL',
      'no permission at all',
    );
    assert.equal(b.setPerms(d0, '/local/domain/1/data/k', 'n0x10'), '!ENOENT', 'owner d16 does not exist');
    assert.equal(b.setPerms(d0, '/local/domain/1/data/k', 'n0', 'r99'), 'OK', 'others may be missing');
    assert.deepEqual(b.perms(d0, '/local/domain/1/data/k'), ['n0', 'r99']);
    assert.equal(b.write(d1, 'data/q', 'v'), 'OK');
    const six = ['n1', 'r2', 'r2', 'r2', 'r2', 'r2'];
    assert.equal(b.setPerms(d1, 'data/q', ...six), '!ENOSPC', `more than ${XS_QUOTA.nodePerms} entries`);
    assert.equal(b.setPerms(d1, 'data/q', ...six.slice(0, 5)), 'OK');
    assert.equal(b.setPerms(d0, '/local/domain/1/data/q', ...six), 'OK', 'no quota for dom0');
    assert.deepEqual(b.perms(d1, '@releaseDomain'), '!EACCES', 'special nodes have perms too');
    assert.deepEqual(b.perms(d0, '@releaseDomain'), ['n0']);
    b.finish();
  });

  it('an unprivileged domain owns at most 1000 nodes; dom0 has no such quota (domain.c quota_nb_entry_per_domain)', () => {
    const b = new Bench();
    const [d0, d1] = [b.dom(0), b.dom(1)];
    // d1 owns its home already; fill up to the quota, 100 children per directory (the
    // node-size quota limits how many child names one node holds).
    // Its home and the keys the host put there (domid) are its own.
    const home = b.dir(d1, '/local/domain/1');
    assert.ok(Array.isArray(home));
    let owned = 1 + home.length;
    for (let g = 0; owned < XS_QUOTA.nodes; g++) {
      assert.equal(b.write(d1, `g${g}`, 'v'), 'OK', `node ${owned}`);
      owned++;
      for (let k = 0; k < 100 && owned < XS_QUOTA.nodes; k++, owned++) {
        assert.equal(b.write(d1, `g${g}/k${k}`, 'v'), 'OK', `node ${owned}`);
      }
    }
    assert.equal(b.write(d1, 'g0/one-too-many', 'v'), '!ENOSPC');
    assert.equal(b.write(d1, 'g0/k1', 'rewritten'), 'OK', 'writing an existing node creates nothing');
    assert.equal(b.read(d1, 'g0/k1'), 'rewritten');
    // Removing frees room; a write that would create two nodes needs room for both.
    assert.equal(b.rm(d1, 'g0/k1'), 'OK');
    assert.equal(b.write(d1, 'a/b', 'v'), '!ENOSPC');
    assert.equal(b.write(d1, 'a', 'v'), 'OK');
    // dom0 writes under d1's home without a quota; the nodes are d1's (inherited owner).
    assert.equal(b.write(d0, '/local/domain/0/extra', 'v'), 'OK');
    b.finish();
  });

  it('watches fire once at registration and on changes at or below, not above (watch.c fire_watches)', () => {
    const b = new Bench();
    const d1 = b.dom(1);
    assert.equal(b.watch(d1, 'data', 'tok'), 'OK');
    assert.deepEqual(b.events(d1), [['data', 'tok']], 'fired once up front, relative as registered');
    assert.equal(b.write(d1, 'data/a', '1'), 'OK');
    assert.equal(b.write(d1, 'data/a', '2'), 'OK');
    assert.equal(b.write(d1, 'other', '3'), 'OK');
    assert.equal(b.write(d1, 'data', 'self'), 'OK');
    assert.equal(b.write(d1, 'dat', 'prefix only'), 'OK');
    assert.deepEqual(b.events(d1), [
      ['data/a', 'tok'],
      ['data/a', 'tok'],
      ['data', 'tok'],
    ]);
    assert.equal(b.watch(d1, '/local/domain/1/data/a', 'abs'), 'OK');
    assert.deepEqual(b.events(d1), [['/local/domain/1/data/a', 'abs']]);
    assert.equal(b.mkdir(d1, 'data/a'), 'OK');
    assert.deepEqual(b.events(d1), [], 'mkdir of an existing node changes nothing');
    assert.equal(b.write(d1, 'data/a/b/c', 'x'), 'OK');
    assert.deepEqual(b.events(d1), [
      ['data/a/b/c', 'tok'],
      ['/local/domain/1/data/a/b/c', 'abs'],
    ]);
    // rm: every removed node exactly (children first), the root as a change below.
    assert.equal(b.watch(d1, 'data/a/b/c', 'leaf'), 'OK');
    b.events(d1);
    assert.equal(b.rm(d1, 'data/a'), 'OK');
    assert.deepEqual(b.events(d1), [
      ['data/a/b/c', 'leaf'],
      ['data/a', 'tok'],
      ['/local/domain/1/data/a', 'abs'],
    ]);
    // Watches on "/" see everything they may read.
    assert.equal(b.watch(b.dom(0), '/', 'all'), 'OK');
    assert.deepEqual(b.events(b.dom(0)), [['/', 'all']]);
    assert.equal(b.write(d1, 'data/z', 'z'), 'OK');
    assert.deepEqual(b.events(b.dom(0)), [['/local/domain/1/data/z', 'all']]);
    b.finish();
  });

  it('watch events only for watchers who may read the node or its parent, old perms counted (watch.c watch_permitted)', () => {
    const b = new Bench();
    const [d1, d2] = [b.dom(1), b.dom(2)];
    assert.equal(b.watch(d2, '/local/domain/1', 'w'), 'OK', 'watching needs no permission');
    assert.deepEqual(b.events(d2), [['/local/domain/1', 'w']]);
    assert.equal(b.write(d1, 'data/k', 'v'), 'OK');
    assert.deepEqual(b.events(d2), [], 'd2 may read neither data/k nor data');
    assert.equal(b.setPerms(d1, 'data/k', 'n1', 'r2'), 'OK');
    assert.deepEqual(b.events(d2), [['/local/domain/1/data/k', 'w']], 'now readable');
    assert.equal(b.write(d1, 'data/k', 'v2'), 'OK');
    assert.deepEqual(b.events(d2), [['/local/domain/1/data/k', 'w']]);
    // A child inherits r2; made n1, it is still seen through its readable parent.
    assert.equal(b.write(d1, 'data/k/child', 'c'), 'OK');
    assert.deepEqual(b.events(d2), [['/local/domain/1/data/k/child', 'w']]);
    assert.equal(b.setPerms(d1, 'data/k/child', 'n1'), 'OK');
    assert.deepEqual(b.events(d2), [['/local/domain/1/data/k/child', 'w']], 'the old perms allowed it');
    assert.equal(b.read(d2, '/local/domain/1/data/k/child'), '!EACCES');
    assert.equal(b.write(d1, 'data/k/child', 'c2'), 'OK');
    assert.deepEqual(b.events(d2), [['/local/domain/1/data/k/child', 'w']], 'the parent is readable');
    // Losing access still tells the watcher (the old permissions allowed it).
    assert.equal(b.setPerms(d1, 'data/k', 'n1'), 'OK');
    assert.deepEqual(b.events(d2), [['/local/domain/1/data/k', 'w']]);
    assert.equal(b.write(d1, 'data/k', 'v3'), 'OK');
    assert.deepEqual(b.events(d2), []);
    b.finish();
  });

  it('watch and unwatch errors; the watch quota; duplicate pending events dropped (watch.c, core.c send_event)', () => {
    const b = new Bench();
    const d1 = b.dom(1);
    assert.equal(b.watch(d1, 'data', 't'), 'OK');
    assert.equal(b.watch(d1, '/local/domain/1/data', 't'), '!EEXIST', 'the same node and token');
    assert.equal(b.watch(d1, 'data', 't2'), 'OK', 'another token is another watch');
    assert.equal(b.watch(d1, 'data//x', 't'), '!EINVAL');
    assert.equal(ack(b.call(d1, XS_WATCH, ['data'])), '!EINVAL', 'no token');
    assert.equal(b.unwatch(d1, 'data', 'nope'), '!ENOENT');
    assert.equal(b.unwatch(d1, '/local/domain/1/data', 't'), 'OK', 'unwatch by canonical name');
    assert.equal(b.watch(d1, '@releaseDomain', 'rel'), 'OK', 'special watches are allowed');
    b.events(d1);
    assert.equal(b.write(d1, 'data/x', '1'), 'OK');
    assert.deepEqual(b.events(d1), [['data/x', 't2']], 'only the watch left');
    // Quota: xenstored refuses once more than 128 watches exist (its check is "> 128").
    for (let i = 0; b.store.domainConnection(1)!.watches.length <= XS_QUOTA.watches; i++)
      assert.equal(b.watch(d1, `w${i}`, 'q'), 'OK');
    assert.equal(b.watch(d1, 'one-more', 'q'), '!E2BIG');
    assert.equal(b.watch(b.dom(0), 'one-more', 'q'), 'OK');
    // Duplicates of an event still queued are dropped.
    const c = b.store.connectTool();
    c.onOutput = null; // nothing written out: events pile up in c.out
    b.store.handle(c, { type: XS_WATCH, reqId: 9, txId: 0, payload: nulStrings('/local/domain/1/dup', 'd') });
    assert.equal(c.out.length, 2, 'the ack and the first event');
    for (let i = 0; i < 3; i++) assert.equal(b.write(d1, 'dup', String(i)), 'OK');
    assert.equal(c.out.filter((m) => m.event).length, 1, 'the same path and token as the unsent first event');
    assert.equal(b.write(d1, 'dup/sub', 'x'), 'OK');
    assert.equal(b.write(d1, 'dup/sub', 'y'), 'OK');
    assert.deepEqual(
      c.out.filter((m) => m.event).map((m) => splitStrings(decodeMessage(m.bytes)!.payload)[0]),
      ['/local/domain/1/dup', '/local/domain/1/dup/sub'],
    );
    b.store.disconnect(c);
    b.finish();
  });

  it('transactions are isolated until commit, which fires their watches (transaction.c)', () => {
    const b = new Bench();
    const [d1, d2] = [b.dom(1), b.dom(2)];
    assert.equal(b.write(d1, 'data/a', 'old'), 'OK');
    assert.equal(b.setPerms(d1, 'data', 'n1', 'r2'), 'OK');
    assert.equal(b.watch(d2, '/local/domain/1/data', 'w'), 'OK');
    b.events(d2);
    const t = b.start(d1) as number;
    assert.equal(t, 1, 'ids start at 1');
    assert.equal(b.write(d1, 'data/a', 'new', t), 'OK');
    assert.equal(b.write(d1, 'data/b', 'born', t), 'OK');
    assert.equal(b.rm(d1, 'data/a', t), 'OK');
    assert.equal(b.write(d1, 'data/a', 'again', t), 'OK');
    assert.equal(b.read(d1, 'data/b', t), 'born', 'the transaction sees its writes');
    assert.equal(b.read(d1, 'data/b'), '!ENOENT', 'nobody else does');
    assert.equal(b.read(d1, 'data/a'), 'old');
    assert.deepEqual(b.dir(d1, 'data', t), ['b', 'a'], 'a went and came back after b');
    assert.deepEqual(b.events(d2), [], 'no events before commit');
    assert.equal(b.end(d1, t, true), 'OK');
    assert.equal(b.read(d2, '/local/domain/1/data/a'), 'again', 'recreated: it inherits n1,r2 from data');
    assert.equal(b.read(d1, 'data/b'), 'born');
    // One event per node the transaction wrote or removed, in the order it first touched them.
    assert.deepEqual(
      b.events(d2).map(([p]) => p),
      ['/local/domain/1/data/a', '/local/domain/1/data/b'],
    );
    // Abort: nothing happens.
    const u = b.start(d1) as number;
    assert.equal(u, 2);
    assert.equal(b.write(d1, 'data/c', 'c', u), 'OK');
    assert.equal(b.end(d1, u, false), 'OK');
    assert.equal(b.read(d1, 'data/c'), '!ENOENT');
    assert.deepEqual(b.events(d2), []);
    b.finish();
  });

  it('a transaction whose reads changed meanwhile fails with EAGAIN; unrelated changes do not (transaction.c)', () => {
    const b = new Bench();
    const [d0, d1] = [b.dom(0), b.dom(1)];
    assert.equal(b.write(d1, 'data/a', '1'), 'OK');
    assert.equal(b.write(d1, 'data/b', '1'), 'OK');
    // Read a, someone writes a: EAGAIN, and the transaction is gone.
    let t = b.start(d1) as number;
    assert.equal(b.read(d1, 'data/a', t), '1');
    assert.equal(b.write(d1, 'data/b', '2', t), 'OK');
    assert.equal(b.write(d0, '/local/domain/1/data/a', 'other'), 'OK');
    assert.equal(b.end(d1, t, true), '!EAGAIN');
    assert.equal(b.read(d1, 'data/b'), '1', 'nothing of it applied');
    assert.equal(b.end(d1, t, true), '!ENOENT', 'ended by the failure');
    // A node read as missing, created meanwhile: EAGAIN.
    t = b.start(d1) as number;
    assert.equal(b.read(d1, 'data/new', t), '!ENOENT');
    assert.equal(b.write(d1, 'data/new', 'outside'), 'OK');
    assert.equal(b.end(d1, t, true), '!EAGAIN');
    // Deleted meanwhile: EAGAIN.
    t = b.start(d1) as number;
    assert.equal(b.read(d1, 'data/new', t), 'outside');
    assert.equal(b.rm(d1, 'data/new'), 'OK');
    assert.equal(b.end(d1, t, true), '!EAGAIN');
    // Changes to nodes the transaction never touched: commit.
    t = b.start(d1) as number;
    assert.equal(b.write(d1, 'data/a', 'mine', t), 'OK');
    assert.equal(b.write(d0, '/local/domain/1/other', 'elsewhere'), 'OK');
    assert.equal(b.end(d1, t, true), 'OK');
    assert.equal(b.read(d1, 'data/a'), 'mine');
    // Two interfering transactions (transaction.c example 4): the second to end fails.
    const t1 = b.start(d1) as number;
    const t2 = b.start(d1) as number;
    assert.equal(b.read(d1, 'data/a', t1), 'mine');
    assert.equal(b.read(d1, 'data/b', t2), '1');
    assert.equal(b.write(d1, 'data/b', 't1', t1), 'OK');
    assert.equal(b.write(d1, 'data/a', 't2', t2), 'OK');
    assert.equal(b.end(d1, t1, true), 'OK');
    assert.equal(b.end(d1, t2, true), '!EAGAIN');
    assert.equal(b.read(d1, 'data/b'), 't1');
    assert.equal(b.read(d1, 'data/a'), 'mine');
    b.finish();
  });

  it('transaction errors: unknown id ENOENT, nested EBUSY, bad end EINVAL, quota ENOSPC (core.c process_message)', () => {
    const b = new Bench();
    const [d0, d1] = [b.dom(0), b.dom(1)];
    assert.equal(b.read(d1, 'domid', 42), '!ENOENT');
    assert.equal(b.end(d1, 0, true), '!ENOENT', 'no transaction to end');
    const t = b.start(d1) as number;
    assert.equal(b.start(d1, t), 'EBUSY');
    assert.equal(b.end(d1, t, 'X'), '!EINVAL');
    assert.equal(b.end(d1, t, true), 'OK', 'still there after the bad end');
    // Watches ignore the transaction id (XS_FLAG_NOTID).
    assert.equal(ack(b.call(d1, XS_WATCH, ['data', 'w'], 12345)), 'OK');
    // Quota: more than 10 open transactions refused.
    const ids: number[] = [];
    for (let i = 0; i <= XS_QUOTA.transactions; i++) ids.push(b.start(d1) as number);
    assert.equal(b.start(d1), 'ENOSPC');
    assert.notEqual(typeof b.start(d0), 'string', 'dom0 has no such quota');
    assert.equal(new Set(ids).size, ids.length, 'distinct ids');
    assert.equal(ack(b.call(d1, XS_RESET_WATCHES, [''])), 'OK');
    assert.equal(b.store.domainConnection(1)!.transactions.size, 0, 'reset_watches drops transactions too');
    assert.equal(b.store.domainConnection(1)!.watches.length, 0);
    b.finish();
  });

  it('other requests: unknown types ENOSYS, privileged ones EACCES, E2BIG replies (core.c process_message, send_reply)', () => {
    const b = new Bench();
    const [d0, d1] = [b.dom(0), b.dom(1)];
    for (const t of [XS_WATCH_EVENT, XS_ERROR, 20, 24, 99, 0xffff])
      assert.equal(errOf(b.call(d1, t, [''])), 'ENOSYS', `type ${t}`);
    for (const t of [XS_CONTROL, XS_INTRODUCE, XS_RELEASE, XS_IS_DOMAIN_INTRODUCED])
      assert.equal(errOf(b.call(d1, t, ['1'])), 'EACCES', `type ${t} from d1`);
    assert.equal(val(b.call(d0, XS_IS_DOMAIN_INTRODUCED, ['1'])), 'T\0');
    assert.equal(val(b.call(d0, XS_IS_DOMAIN_INTRODUCED, ['9'])), 'F\0');
    assert.equal(val(b.call(d0, XS_IS_DOMAIN_INTRODUCED, [String(0x7ff0)])), 'T\0', 'DOMID_SELF');
    assert.equal(errOf(b.call(d0, XS_INTRODUCE, ['5', '0', '1'])), 'ENOSYS', 'introduction is the host’s');
    // A directory listing over XENSTORE_PAYLOAD_MAX: E2BIG; DIRECTORY_PART pages through it.
    for (let i = 0; i < 300; i++) assert.equal(b.write(d0, `/big/child-number-${i}`, ''), 'OK');
    assert.equal(b.dir(d0, '/big'), '!E2BIG');
    const names: string[] = [];
    let off = 0;
    let gen = '';
    for (;;) {
      const m = b.call(d0, XS_DIRECTORY_PART, ['/big', String(off)]);
      assert.equal(m.type, XS_DIRECTORY_PART);
      assert.ok(m.payload.length <= XENSTORE_PAYLOAD_MAX);
      const parts = splitStrings(m.payload);
      gen ||= parts[0]!;
      assert.equal(parts[0], gen, 'the same generation in every part');
      const chunk = parts.slice(1);
      const last = chunk.at(-1) === '';
      for (const n of chunk) if (n !== '') names.push(n);
      off += chunk.filter((n) => n !== '').reduce((s, n) => s + n.length + 1, 0);
      if (last) break;
    }
    assert.equal(names.length, 300);
    assert.equal(names[299], 'child-number-299');
    assert.deepEqual(XSD_ERRORS.slice(0, 3), ['EINVAL', 'EACCES', 'EEXIST']);
    b.finish();
  });

  it('watch depth: 0 the node itself, 1 its children too, "/" counts one level; a negative depth EINVAL (watch.c do_watch, is_child)', () => {
    const b = new Bench();
    const [d0, d1] = [b.dom(0), b.dom(1)];
    assert.equal(ack(b.call(d1, XS_WATCH, ['data', 'd0', '0'])), 'OK');
    assert.equal(ack(b.call(d1, XS_WATCH, ['data', 'd1', '1'])), 'OK');
    assert.equal(ack(b.call(d1, XS_WATCH, ['data', 'all'])), 'OK');
    assert.equal(ack(b.call(d0, XS_WATCH, ['/', 'root1', '1'])), 'OK');
    assert.equal(errOf(b.call(d1, XS_WATCH, ['data', 'neg', '-1'])), 'EINVAL');
    assert.equal(errOf(b.call(d1, XS_WATCH, ['data', 'four', '1', 'x'])), 'EINVAL');
    b.events(d1);
    b.events(d0);
    assert.equal(b.write(d1, 'data', 'x'), 'OK');
    assert.equal(b.write(d1, 'data/a', 'x'), 'OK');
    assert.equal(b.write(d1, 'data/a/b', 'x'), 'OK');
    const tokens = (evs: [string, string][]) => evs.map(([p, t]) => `${t}:${p}`);
    assert.deepEqual(tokens(b.events(d1)), [
      'd0:data',
      'd1:data',
      'all:data',
      'd1:data/a',
      'all:data/a',
      'all:data/a/b',
    ]);
    assert.equal(b.write(d0, '/top', 'x'), 'OK');
    assert.deepEqual(
      tokens(b.events(d0)),
      ['root1:/top'],
      'the root watch with depth 1: not the deeper keys',
    );
    // A removed subtree fires exactly on each removed node (the depth does not hide the watched node).
    assert.equal(b.rm(d1, 'data'), 'OK');
    assert.ok(tokens(b.events(d1)).includes('d0:data'));
    b.finish();
  });

  it('GET_FEATURE: own features without a domid; a domid only for the privileged (domain.c do_get_feature)', () => {
    const b = new Bench();
    const [d0, d1] = [b.dom(0), b.dom(1)];
    const features = String(XENSTORE_SERVER_FEATURE_ERROR | XENSTORE_SERVER_FEATURE_WATCHDEPTH);
    assert.equal(val(b.call(d1, XS_GET_FEATURE, new Uint8Array(0))), `${features}\0`);
    assert.equal(errOf(b.call(d1, XS_GET_FEATURE, ['1'])), 'EACCES');
    assert.equal(val(b.call(d0, XS_GET_FEATURE, ['1'])), `${features}\0`);
    assert.equal(errOf(b.call(d0, XS_GET_FEATURE, ['9'])), 'ENOENT');
    assert.equal(errOf(b.call(d0, XS_GET_FEATURE, ['1', '2'])), 'EINVAL');
    b.finish();
  });

  it('a domain released: connection, watches, home and owned nodes go; watchers and @releaseDomain fire (domain.c destroy_domain)', () => {
    const b = new Bench([0, 1, 2]);
    const [d0, d1, d2] = [b.dom(0), b.dom(1), b.dom(2)];
    // d2 owns a node in d1's area, and watches things; d1 watches d2's home.
    assert.equal(b.mkdir(d1, 'drop'), 'OK');
    assert.equal(b.setPerms(d1, 'drop', 'n1', 'b2'), 'OK');
    assert.equal(b.write(d2, '/local/domain/1/drop/from2', 'x'), 'OK');
    assert.equal(b.write(d2, 'data/k', 'v'), 'OK');
    assert.equal(b.setPerms(d2, 'data', 'n2', 'r1'), 'OK');
    assert.equal(b.setPerms(d2, 'data/k', 'n2', 'r1'), 'OK');
    assert.equal(b.watch(d2, '/', 'everything'), 'OK');
    assert.equal(b.start(d2), 1);
    assert.equal(b.watch(d1, '/local/domain/2/data', 'w'), 'OK');
    assert.equal(b.watch(d1, '/local/domain/1/drop', 'mine'), 'OK');
    assert.equal(b.watch(d0, '@releaseDomain', 'rel'), 'OK');
    assert.equal(b.watch(d1, '@releaseDomain', 'rel'), 'OK');
    b.events(d0);
    b.events(d1);
    b.store.releaseDomain(2);
    assert.equal(b.store.domainConnection(2), undefined);
    assert.equal(d2.closed, true);
    assert.equal(d2.watches.length, 0);
    assert.equal(d2.transactions.size, 0);
    assert.ok(!b.store.paths().some((p) => p.startsWith('/local/domain/2')), 'home removed');
    assert.equal(b.read(d1, 'drop/from2'), '!ENOENT', 'the node it owned elsewhere removed');
    // The home goes as a subtree: data (below the root) fires d1's watch on it exactly; the
    // node d2 owned in d1's area fires as a removed root, seen through its readable parent.
    assert.deepEqual(b.events(d1), [
      ['/local/domain/2/data', 'w'],
      ['/local/domain/1/drop/from2', 'mine'],
    ]);
    assert.deepEqual(b.events(d0), [['@releaseDomain', 'rel']], 'dom0 may read @releaseDomain');
    assert.deepEqual(
      b.store.stats().connections.map((c) => c.domid),
      [0, 1],
    );
    assert.deepEqual(b.invariants([0, 1]), []);
    // Nothing is left for d2 in the store's own check either.
    assert.deepEqual(
      b.store.checkInvariants((id) => id !== 2),
      [],
    );
    // Another domain introduced fires @introduceDomain for dom0.
    assert.equal(b.watch(d0, '@introduceDomain', 'intro'), 'OK');
    b.events(d0);
    b.attach(b.store.introduceDomain(3));
    assert.deepEqual(b.events(d0), [['@introduceDomain', 'intro']]);
    assert.deepEqual(b.events(d1), [], 'd1 may not read @introduceDomain');
    b.finish();
  });
});

// ---- through the ring, single-thread mode ---------------------------------------------------------

/** Lets every promise job run. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Machine address of a domain's xenstore ring page. */
function ringBase(host: Host, dom: DomainHandle): number {
  const f = host.context(dom.domid).start.storeFrame;
  const mfn = dom.kind === 'pv' ? f : dom.xen.p2m!.get(f)!.mfn;
  return mfn * 4096;
}

function xsStats(host: Host) {
  return host.xenstored!.stats();
}

/** The watches the service holds for a domain's connection (undefined: no connection). */
function watchesOf(host: Host, domid: number): number | undefined {
  return xsStats(host).connections.find((c) => c.kind === 'domain' && c.domid === domid)?.watches;
}

/**
 * Every ring test's end: the invariants hold; then every domain is destroyed,
 * and no ring, connection, transaction or home is left for any of them.
 */
async function teardown(host: Host): Promise<void> {
  assert.deepEqual(host.checkInvariants(), []);
  for (const d of host.domains) host.destroyDomain(d.domid);
  await settle();
  const st = xsStats(host);
  assert.deepEqual(st.rings, []);
  assert.deepEqual(
    st.connections.map((c) => c.kind),
    ['tool'],
  );
  assert.equal(st.transactions, 0);
  assert.deepEqual(await host.xenstore!.directory('/local/domain'), []);
  assert.deepEqual(host.checkInvariants(), []);
}

const KINDS = [
  ['pv', 'hvm'],
  ['hvm', 'pv'],
] as const;

describe('xenstore through the ring, single-thread', () => {
  for (const kind of ['pv', 'hvm'] as const) {
    it(`${kind}: the toolstack gives a ring page, grant ref 1 and a Xen-attached event channel (xen-grant-tables.md §11)`, async () => {
      const host = new Host({ xenstore: true });
      const d0 = host.createDomain({ kind: 'pv', memoryKiB: 256 });
      const d = host.createDomain({ kind, memoryKiB: 256 });
      const start = host.context(d.domid).start;
      assert.equal(start.storePort, 1, 'the first port, as libxl allocates it');
      assert.equal(d.xen.maxPages, d.xen.ramPages + 1, 'max_pages leaves room for the ring');
      assert.equal(d.xen.totPages, d.xen.ramPages + 1);
      if (kind === 'hvm') {
        assert.equal(start.storeFrame, XENSTORE_RING_VA / 4096, 'HVM_PARAM_STORE_PFN');
        assert.ok(d.memory.mapped(XENSTORE_RING_VA, true), 'already in the P2M');
      } else {
        assert.ok(d.xen.owned.has(start.storeFrame), 'store_mfn: a frame the domain owns');
        assert.ok(!d.memory.mapped(XENSTORE_RING_VA), 'PV maps it itself');
      }
      const base = ringBase(host, d);
      const w = host.hypervisor.machine.words;
      assert.equal(
        w.load32(base + XS_RING_SERVER_FEATURES),
        XENSTORE_SERVER_FEATURE_ERROR | XENSTORE_SERVER_FEATURE_WATCHDEPTH,
      );
      assert.equal(w.load32(base + XS_RING_CONNECTION), XENSTORE_CONNECTED);
      // Grant ref 1 (GNTTAB_RESERVED_XENSTORE) lets dom0 map the ring, as xenstored does.
      const e = d.xen.gt.shaAddr(1);
      assert.equal(w.load16(e), GTF_permit_access);
      assert.equal(host.hypervisor.machine.view.getUint16(e + 2, true), 0);
      assert.equal(host.hypervisor.machine.view.getUint32(e + 4, true), start.storeFrame);
      const mapVa = 0xe000_0000;
      const arg = d0.ramBytes - 16 * 4096;
      d0.memory.write(
        arg,
        encodeStruct(gnttab_map_grant_ref, {
          host_addr: mapVa,
          flags: GNTMAP_host_map | GNTMAP_readonly,
          ref: 1,
          dom: d.domid,
        }),
      );
      assert.equal(d0.hypercall(__HYPERVISOR_grant_table_op, GNTTABOP_map_grant_ref, arg, 1), 0);
      const mapped = decodeStruct(gnttab_map_grant_ref, d0.memory.read(arg, gnttab_map_grant_ref.size));
      assert.equal(mapped.status, GNTST_okay);
      assert.equal(
        d0.memory.readU32(mapVa + XS_RING_SERVER_FEATURES),
        XENSTORE_SERVER_FEATURE_ERROR | XENSTORE_SERVER_FEATURE_WATCHDEPTH,
      );
      d0.memory.write(arg, encodeStruct(gnttab_unmap_grant_ref, { host_addr: mapVa, handle: mapped.handle }));
      assert.equal(d0.hypercall(__HYPERVISOR_grant_table_op, GNTTABOP_unmap_grant_ref, arg, 1), 0);
      // The store port is interdomain with a Xen-attached port of the same domain.
      const ev = EventChannels.open(host.context(d.domid));
      const st = ev.status(start.storePort);
      assert.equal(st.status, EVTCHNSTAT_interdomain);
      assert.equal(st.remoteDom, d.domid);
      const xenPort = st.remotePort!;
      assert.equal(xenPort, 2);
      // A guest cannot send on, close, or re-bind a Xen-attached port (event_channel.c).
      const a = d.ramBytes - 4096;
      const evop = (cmd: number, bytes: Uint8Array) => {
        d.memory.write(a, bytes);
        return d.hypercall(__HYPERVISOR_event_channel_op, cmd, a);
      };
      assert.equal(evop(EVTCHNOP_send, encodeStruct(evtchn_send, { port: xenPort })), -XEN_EINVAL);
      assert.equal(evop(EVTCHNOP_close, encodeStruct(evtchn_close, { port: xenPort })), -XEN_EINVAL);
      assert.equal(
        evop(EVTCHNOP_bind_vcpu, encodeStruct(evtchn_bind_vcpu, { port: xenPort, vcpu: 0 })),
        -XEN_EINVAL,
      );
      assert.equal(ev.status(xenPort).status, EVTCHNSTAT_interdomain, 'still there');
      assert.deepEqual(host.checkInvariants(), []);
      host.destroyDomain(d.domid);
      assert.deepEqual(xsStats(host).rings, [d0.domid]);
      await teardown(host);
    });
  }

  for (const [ka, kb] of KINDS) {
    it(`${ka} writes keys for ${kb}, which reads, is refused elsewhere, and sees its watch fire (issue 4)`, async () => {
      const host = new Host({ xenstore: true });
      host.createDomain({ kind: 'pv', memoryKiB: 256 }); // dom0
      const a = host.createDomain({ kind: ka, memoryKiB: 256 });
      const b = host.createDomain({ kind: kb, memoryKiB: 256 });
      const A = `/local/domain/${a.domid}`;
      const B = `/local/domain/${b.domid}`;
      // Watch callbacks only count events (xenbus style); the code that waits reads the key.
      // waitFor's condition must be set by event delivery itself, not by a later continuation.
      const valueAfterChange = async (xs: XsRingClient, path: string, count: { n: number }, seen: number) => {
        await xs.waitFor(() => count.n > seen);
        try {
          return { seen: count.n, v: await xs.read(path) };
        } catch (e) {
          return { seen: count.n, v: `!${(e as XsError).code}` };
        }
      };
      const writer = async (ctx: GuestContext) => {
        const xs = XsRingClient.open(ctx);
        const me = ctx.start.domid;
        assert.equal(await xs.getDomainPath(me), A);
        assert.equal(await xs.read('domid'), String(me));
        await xs.mkdir('data');
        await xs.setPerms('data', [
          { domid: me, perm: 'n' },
          { domid: b.domid, perm: 'r' },
        ]);
        await xs.write('data/private', 'secret');
        await xs.setPerms('data/private', [{ domid: me, perm: 'n' }]);
        await xs.write('data/public', 'p1');
        // Wait for b's acknowledgement, in b's home, readable by us.
        const acks: string[] = [];
        const count = { n: 0 };
        await xs.watch(`${B}/data/ack`, 'ack', () => count.n++);
        let seen = 0;
        for (let want = 'seen p1'; ; ) {
          const r = await valueAfterChange(xs, `${B}/data/ack`, count, seen);
          seen = r.seen;
          acks.push(r.v);
          if (r.v !== want) continue;
          if (want === 'seen p2') break;
          await xs.write('data/public', 'p2');
          want = 'seen p2';
        }
        await xs.rm('data/public');
        await xs.close();
        return acks;
      };
      const reader = async (ctx: GuestContext) => {
        const xs = XsRingClient.open(ctx);
        const me = ctx.start.domid;
        const events: string[] = [];
        const values: string[] = [];
        await xs.mkdir('data');
        await xs.setPerms('data', [
          { domid: me, perm: 'n' },
          { domid: a.domid, perm: 'r' },
        ]);
        const count = { n: 0 };
        await xs.watch(`${A}/data/public`, 'pub', (path, token) => {
          events.push(`${token}:${path}`);
          count.n++;
        });
        let seen = 0;
        const until = async (want: string) => {
          for (;;) {
            const r = await valueAfterChange(xs, `${A}/data/public`, count, seen);
            seen = r.seen;
            values.push(r.v);
            if (r.v === want) return;
          }
        };
        await until('p1');
        // Refused where it should be.
        const refused: string[] = [];
        const tryIt = async (what: string, p: Promise<unknown>) => {
          try {
            await p;
            refused.push(`${what}:allowed`);
          } catch (e) {
            refused.push(`${what}:${(e as XsError).code}`);
          }
        };
        await tryIt('read-private', xs.read(`${A}/data/private`));
        await tryIt('write-public', xs.write(`${A}/data/public`, 'mine'));
        await tryIt('read-missing', xs.read(`${A}/data/missing`));
        await tryIt('read-home', xs.read(`${A}/domid`));
        await tryIt('dir-home', xs.directory(A));
        await tryIt('list-data', xs.directory(`${A}/data`));
        await tryIt('perms-public', xs.getPerms(`${A}/data/public`));
        await xs.write('data/ack', 'seen p1');
        await xs.setPerms('data/ack', [
          { domid: me, perm: 'n' },
          { domid: a.domid, perm: 'r' },
        ]);
        await until('p2');
        await xs.write('data/ack', 'seen p2');
        await until('!ENOENT');
        return { events, values, refused };
      };
      const out = await host.runGuests([
        { domid: a.domid, main: writer },
        { domid: b.domid, main: reader },
      ]);
      for (const o of out) assert.ok(o.ok, `d${o.domid}: ${o.error?.stack}`);
      const r = out[1]!.result as { events: string[]; values: string[]; refused: string[] };
      assert.deepEqual(r.refused, [
        'read-private:EACCES',
        'write-public:EACCES',
        'read-missing:ENOENT',
        'read-home:EACCES',
        'dir-home:EACCES',
        'list-data:allowed',
        'perms-public:allowed',
      ]);
      // Once at registration (a may not have written yet), then each change b may see.
      assert.ok(r.events.every((e) => e === `pub:${A}/data/public`));
      assert.ok(r.values.includes('p1') && r.values.includes('p2') && r.values.at(-1) === '!ENOENT');
      assert.ok(!r.values.includes('mine'), 'the refused write changed nothing');
      const acks = out[0]!.result as string[];
      assert.ok(acks.includes('seen p1') && acks.includes('seen p2'));
      // a closed its client: its watches are gone, its connection stays with the domain.
      assert.equal(watchesOf(host, a.domid), 0);
      assert.equal(watchesOf(host, b.domid), 1);
      assert.equal(await host.xenstore!.read(`${B}/data/ack`), 'seen p2');
      assert.deepEqual(host.checkInvariants(), []);
      host.destroyDomain(b.domid);
      host.destroyDomain(a.domid);
      assert.equal(watchesOf(host, b.domid), undefined);
      assert.deepEqual(
        xsStats(host).connections.map((c) => `${c.kind}${c.domid}`),
        ['tool0', 'domain0'],
      );
      assert.deepEqual(await host.xenstore!.directory('/local/domain'), ['0']);
      await teardown(host);
    });
  }

  it('the host writes keys a guest reads; watches fire both ways (issue 4: host.xenstore)', async () => {
    const host = new Host({ xenstore: true });
    host.createDomain({ kind: 'pv', memoryKiB: 256 });
    const g = host.createDomain({ kind: 'hvm', memoryKiB: 256 });
    const xsh = host.xenstore!;
    const G = `/local/domain/${g.domid}`;
    await xsh.write(`${G}/device/vif/0/mac`, '00:16:3e:00:00:01');
    assert.deepEqual(await xsh.getPerms(`${G}/device/vif/0/mac`), [{ domid: g.domid, perm: 'n' }]);
    const hostSeen: string[] = [];
    await xsh.watch(`${G}/device/vif/0/state`, 'host', (p) => hostSeen.push(p));
    await settle();
    assert.deepEqual(hostSeen, [`${G}/device/vif/0/state`], 'the host client gets the first event too');
    const xs = XsRingClient.open(host.context(g.domid));
    assert.equal(await xs.read('device/vif/0/mac'), '00:16:3e:00:00:01');
    const seen: string[] = [];
    await xs.watch('device/vif/0/backend-state', 'be', (p) => seen.push(p));
    assert.deepEqual(seen, ['device/vif/0/backend-state'], 'relative watch, relative event');
    await xs.write('device/vif/0/state', '4');
    // do_write fires the watches, then acks: a watch on our own key is dispatched before the reply.
    const own: string[] = [];
    await xs.watch('data/own', 'own', (p) => own.push(p));
    await xs.write('data/own', 'x');
    assert.deepEqual(own, ['data/own', 'data/own']);
    await settle();
    assert.deepEqual(hostSeen, [`${G}/device/vif/0/state`, `${G}/device/vif/0/state`]);
    await xsh.write(`${G}/device/vif/0/backend-state`, '4');
    await xs.waitFor(() => seen.length === 2);
    assert.deepEqual(seen, ['device/vif/0/backend-state', 'device/vif/0/backend-state']);
    await xsh.unwatch(`${G}/device/vif/0/state`, 'host');
    await assert.rejects(xsh.unwatch(`${G}/device/vif/0/state`, 'host'), (e: XsError) => e.code === 'ENOENT');
    await assert.rejects(xs.read('nothere'), (e: unknown) => e instanceof XsError && e.code === 'ENOENT');
    await assert.rejects(
      xs.watch('device/vif/0/backend-state', 'be', () => {}),
      /EEXIST/,
    );
    assert.deepEqual(host.checkInvariants(), []);
    host.destroyDomain(g.domid);
    await settle();
    assert.equal(watchesOf(host, g.domid), undefined);
    await teardown(host);
  });

  it('a transaction retried on EAGAIN after a conflicting write (transaction.c, xenbus_transaction_end)', async () => {
    const host = new Host({ xenstore: true });
    const d = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    const other = host.createDomain({ kind: 'hvm', memoryKiB: 256 });
    const xs = XsRingClient.open(host.context(d.domid));
    await xs.write('data/counter', '0');
    let attempts = 0;
    const result = await xs.transaction(async (tx) => {
      attempts++;
      const v = Number(await tx.read('data/counter'));
      assert.equal(await xs.read('data/counter'), attempts === 1 ? '0' : '10', 'outside the transaction');
      if (attempts === 1) await host.xenstore!.write(`/local/domain/${d.domid}/data/counter`, '10');
      await tx.write('data/counter', String(v + 1));
      await tx.write('data/note', `attempt ${attempts}`);
      return v + 1;
    });
    assert.equal(attempts, 2);
    assert.equal(result, 11);
    assert.equal(await xs.read('data/counter'), '11');
    assert.equal(await xs.read('data/note'), 'attempt 2');
    // A throwing body aborts: nothing of it stays.
    await assert.rejects(
      xs.transaction(async (tx) => {
        await tx.write('data/aborted', 'x');
        throw new Error('changed my mind');
      }),
      /changed my mind/,
    );
    await assert.rejects(xs.read('data/aborted'), /ENOENT/);
    // Nested transactions: EBUSY from xenstored.
    await assert.rejects(
      xs.transaction((tx) => tx.transaction(async () => 1)),
      (e: unknown) => e instanceof XsError && e.code === 'EBUSY',
    );
    assert.equal(xsStats(host).transactions, 0, 'every transaction ended');
    // Another domain's transaction on its own keys does not conflict with ours.
    const xo = XsRingClient.open(host.context(other.domid));
    const t = await xo.transaction(async (tx) => {
      await tx.write('data/x', 'y');
      await xs.write('data/counter', '12');
      return 'committed';
    });
    assert.equal(t, 'committed');
    await teardown(host);
  });

  it('libxenstore by its names: get/set_permissions, watch + read_watch, watch_depth, transaction_start/end, get_domain_path (xs.c)', async () => {
    const host = new Host({ xenstore: true });
    host.createDomain({ kind: 'pv', memoryKiB: 256 });
    const d = host.createDomain({ kind: 'hvm', memoryKiB: 256 });
    const other = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    const xs = XsRingClient.open(host.context(d.domid));
    const D = await xs.getDomainPath(d.domid);
    assert.equal(D, `/local/domain/${d.domid}`);
    await xs.mkdir('data/dir');
    await xs.write('data/dir/k', 'v');
    assert.deepEqual(await xs.directory('data/dir'), ['k']);
    await xs.setPermissions('data/dir/k', [
      { domid: d.domid, perm: 'n' },
      { domid: other.domid, perm: 'r' },
    ]);
    assert.deepEqual(await xs.getPermissions('data/dir/k'), [
      { domid: d.domid, perm: 'n' },
      { domid: other.domid, perm: 'r' },
    ]);
    assert.equal(
      await xs.getFeaturesSupported(),
      XENSTORE_SERVER_FEATURE_ERROR | XENSTORE_SERVER_FEATURE_WATCHDEPTH,
    );

    // xs_watch with no callback: events wait for xs_read_watch, oldest first.
    await xs.watch('data/dir', 'plain');
    await xs.watchDepth('data', 'shallow', 0);
    assert.deepEqual(await xs.readWatch(), { path: 'data/dir', token: 'plain' });
    assert.deepEqual(await xs.readWatch(), { path: 'data', token: 'shallow' });
    await xs.write('data/dir/k', 'w');
    assert.deepEqual(
      await xs.readWatch(),
      { path: 'data/dir/k', token: 'plain' },
      'depth 0 skipped data/dir/k',
    );
    await host.xenstore!.write(`${D}/data`, 'top');
    assert.deepEqual(await xs.readWatch(), { path: 'data', token: 'shallow' });
    await assert.rejects(
      xs.watchDepth('data', 'bad', -1),
      (e: unknown) => e instanceof XenError && e.op === 'xs_watch_depth' && e.code === 'EINVAL',
    );
    await xs.unwatch('data/dir', 'plain');
    await xs.unwatch('data', 'shallow');

    // xs_transaction_start / xs_transaction_end: EAGAIN after a conflicting write, abort discards.
    const t1 = await xs.transactionStart();
    assert.ok(t1.txId > 0);
    assert.equal(await t1.read('data/dir/k'), 'w');
    await t1.write('data/dir/k', 'from t1');
    await host.xenstore!.write(`${D}/data/dir/k`, 'meanwhile');
    await assert.rejects(
      xs.transactionEnd(t1),
      (e: unknown) =>
        e instanceof XsError && e.op === 'xs_transaction_end' && e.code === 'EAGAIN' && e.errno === 11,
    );
    assert.equal(await xs.read('data/dir/k'), 'meanwhile');
    const t2 = await xs.transactionStart();
    await t2.write('data/dir/k', 'discarded');
    await xs.transactionEnd(t2, true);
    assert.equal(await xs.read('data/dir/k'), 'meanwhile');
    await assert.rejects(t2.read('data/dir/k'), (e: unknown) => e instanceof XsError && e.code === 'ENOENT');
    const t3 = await xs.transactionStart();
    await assert.rejects(t3.transactionStart(), (e: unknown) => e instanceof XsError && e.code === 'EBUSY');
    await t3.write('data/dir/k', 'committed');
    await xs.transactionEnd(t3);
    assert.equal(await xs.read('data/dir/k'), 'committed');
    assert.equal(xsStats(host).transactions, 0);
    await teardown(host);
  });

  it('watches as an async iterator, with a depth; readWatch and the iterator take an AbortSignal (AbortError, no waiter left)', async () => {
    const host = new Host({ xenstore: true });
    host.createDomain({ kind: 'pv', memoryKiB: 256 });
    const d = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    const xs = XsRingClient.open(host.context(d.domid));
    const D = `/local/domain/${d.domid}`;
    const seen: string[] = [];
    // After each event, the next writes: data/a/deep (two levels down) must not fire.
    const after: Record<string, string[]> = {
      data: ['data/a'],
      'data/a': ['data/a/deep', 'data/b'],
      'data/b': ['data/stop'],
    };
    for await (const ev of xs.watchEvents('data', { depth: 1 })) {
      seen.push(ev.path);
      if (ev.path === 'data/stop') break;
      for (const k of after[ev.path] ?? []) await host.xenstore!.write(`${D}/${k}`, 'x');
    }
    assert.deepEqual(
      seen,
      ['data', 'data/a', 'data/b', 'data/stop'],
      'the registration event, then depth 1 only',
    );
    assert.equal(xs.watchCount, 0, 'leaving the loop unwatched');
    assert.equal(watchesOf(host, d.domid), 0);

    await xs.watch('data/q', 'q');
    await xs.readWatch();
    const ac = new AbortController();
    const pending = xs.readWatch({ signal: ac.signal });
    await settle();
    assert.equal(host.waiters, 1);
    ac.abort();
    await assert.rejects(pending, (e: unknown) => e instanceof Error && e.name === 'AbortError');
    assert.equal(host.waiters, 0, 'the aborted wait left nothing behind');
    await xs.write('data/q', '1');
    assert.deepEqual(
      await xs.readWatch(),
      { path: 'data/q', token: 'q' },
      'events still arrive after an abort',
    );

    const stop = new AbortController();
    const got: string[] = [];
    await assert.rejects(
      (async () => {
        for await (const ev of xs.watchEvents('data/it', { signal: stop.signal })) {
          got.push(ev.path);
          stop.abort();
        }
      })(),
      (e: unknown) => e instanceof Error && e.name === 'AbortError',
    );
    assert.deepEqual(got, ['data/it']);
    assert.equal(xs.watchCount, 1, 'the aborted iterator unwatched; data/q stays');
    assert.equal(host.waiters, 0);
    await teardown(host);
  });

  it('requests and replies larger than the ring travel in chunks; the node-size quota holds (xenbus_comms.c, domain.c)', async () => {
    const host = new Host({ xenstore: true });
    const d0 = host.createDomain({ kind: 'hvm', memoryKiB: 256 });
    const d1 = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    const x0 = XsRingClient.open(host.context(d0.domid));
    const x1 = XsRingClient.open(host.context(d1.domid));
    const big = Array.from({ length: 4000 }, (_, i) => String.fromCharCode(97 + (i % 26))).join('');
    await x0.write('data/big', big);
    assert.equal(await x0.read('data/big'), big, 'a 4000-byte value both ways through a 1024-byte ring');
    await assert.rejects(x0.write('data/huge', 'x'.repeat(XENSTORE_PAYLOAD_MAX)), /E2BIG/);
    await assert.rejects(x1.write('data/big', big.slice(0, 3000)), /ENOSPC/);
    await x1.write('data/big', big.slice(0, 2000));
    assert.equal(await x1.read('data/big'), big.slice(0, 2000));
    // Concurrent requests: replies matched by req_id.
    const reads = await Promise.all([x1.read('domid'), x1.read('data/big'), x1.getDomainPath(7)]);
    assert.deepEqual(reads, [String(d1.domid), big.slice(0, 2000), '/local/domain/7']);
    const w = host.hypervisor.machine.words;
    const base = ringBase(host, d1);
    assert.equal(w.load32(base + 2048), w.load32(base + 2052), 'every request consumed');
    assert.equal(w.load32(base + 2056), w.load32(base + 2060), 'every reply consumed');
    await teardown(host);
  });

  it('watch events beyond a full reply ring wait in xenstored until the guest reads (domain.c writechn)', async () => {
    const host = new Host({ xenstore: true });
    host.createDomain({ kind: 'pv', memoryKiB: 256 });
    const g = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    const xs = XsRingClient.open(host.context(g.domid));
    const seen: string[] = [];
    await xs.watch('data', 'many', (p) => seen.push(p));
    assert.deepEqual(seen, ['data']);
    const G = `/local/domain/${g.domid}`;
    for (let i = 0; i < 100; i++) await host.xenstore!.write(`${G}/data/key-${i}`, String(i));
    const w = host.hypervisor.machine.words;
    const base = ringBase(host, g);
    assert.equal((w.load32(base + 2060) - w.load32(base + 2056)) >>> 0, 1024, 'the reply ring is full');
    const conn = host.xenstored!.store.domainConnection(g.domid)!;
    assert.ok(conn.out.length > 0, 'the rest is queued');
    await xs.waitFor(() => seen.length === 101);
    assert.deepEqual(
      seen.slice(1),
      Array.from({ length: 100 }, (_, i) => `data/key-${i}`),
    );
    assert.equal(conn.out.length, 0);
    assert.equal(w.load32(base + 2060), w.load32(base + 2056));
    await teardown(host);
  });

  it('a guest that corrupts its ring is ignored, the error field says why (core.c handle_input)', async () => {
    const host = new Host({ xenstore: true });
    host.createDomain({ kind: 'pv', memoryKiB: 256 });
    const bad1 = host.createDomain({ kind: 'hvm', memoryKiB: 256 });
    const bad2 = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    const good = host.createDomain({ kind: 'hvm', memoryKiB: 256 });
    const w = host.hypervisor.machine.words;
    // bad1: req_prod more than a ring ahead of req_cons.
    const x1 = XsRingClient.open(host.context(bad1.domid));
    await x1.watch('data', 't', () => {});
    assert.equal(watchesOf(host, bad1.domid), 1);
    const b1 = ringBase(host, bad1);
    w.store32(b1 + XS_RING_REQ_PROD, w.load32(b1 + XS_RING_REQ_PROD) + 2000);
    assert.equal(x1.events.send(x1.port), 0);
    assert.equal(w.load32(b1 + XS_RING_ERROR), XENSTORE_ERROR_RINGIDX);
    assert.equal(host.xenstored!.store.domainConnection(bad1.domid)!.ignored, true);
    assert.equal(watchesOf(host, bad1.domid), 0, 'its watches went');
    // bad2: a header announcing more than XENSTORE_PAYLOAD_MAX.
    const ctx2 = host.context(bad2.domid);
    const x2 = XsRingClient.open(ctx2);
    const hdr = encodeMessage({ type: XS_READ, reqId: 1, txId: 0, payload: new Uint8Array(0) });
    new DataView(hdr.buffer).setUint32(12, XENSTORE_PAYLOAD_MAX + 1, true);
    ctx2.mem.write(x2.ring, hdr);
    ctx2.mem.store32(x2.ring + XS_RING_REQ_PROD, 16);
    assert.equal(x2.events.send(x2.port), 0);
    assert.equal(w.load32(ringBase(host, bad2) + XS_RING_ERROR), XENSTORE_ERROR_PROTO);
    // The others go on; and the bad ones are cleaned up like any other when destroyed.
    const xg = XsRingClient.open(host.context(good.domid));
    await xg.write('data/fine', 'yes');
    assert.equal(await xg.read('data/fine'), 'yes');
    assert.deepEqual(host.checkInvariants(), []);
    host.destroyDomain(bad1.domid);
    host.destroyDomain(bad2.domid);
    assert.deepEqual(xsStats(host).rings, [0, good.domid]);
    await teardown(host);
  });

  it('a guest that closes its store port can bind it again and go on (event_channel.c evtchn_close)', async () => {
    const host = new Host({ xenstore: true });
    const d = host.createDomain({ kind: 'hvm', memoryKiB: 256 });
    const ctx = host.context(d.domid);
    const ev = EventChannels.open(ctx);
    const xs = XsRingClient.open(ctx, { events: ev });
    await xs.write('data/k', '1');
    const xenPort = ev.status(ctx.start.storePort).remotePort!;
    await xs.close();
    assert.equal(ev.close(ctx.start.storePort), 0);
    const st = ev.status(xenPort);
    assert.equal(st.remoteDom, d.domid, 'the Xen-attached port waits for the domain to bind again');
    const port = ev.bindInterdomain(d.domid, xenPort);
    assert.ok(port > 0);
    const again = XsRingClient.open({ ...ctx, start: { ...ctx.start, storePort: port } }, { events: ev });
    assert.equal(await again.read('data/k'), '1');
    await teardown(host);
  });

  it('a destroyed domain: watches and connection gone, home removed, watchers and @releaseDomain told (domain.c)', async () => {
    const host = new Host({ xenstore: true });
    const d0 = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    const fe = host.createDomain({ kind: 'hvm', memoryKiB: 256 });
    const be = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    const FE = `/local/domain/${fe.domid}`;
    const x0 = XsRingClient.open(host.context(d0.domid));
    const released: string[] = [];
    await x0.watch('@releaseDomain', 'rel', (p) => released.push(p));
    const xfe = XsRingClient.open(host.context(fe.domid));
    await xfe.write('device/vbd/0/state', '1');
    await xfe.setPerms('device', [
      { domid: fe.domid, perm: 'n' },
      { domid: be.domid, perm: 'r' },
    ]);
    await xfe.watch('device', 'fe', () => {});
    const tx = await xfe.startTransaction();
    await xfe.writeIn(tx, 'device/vbd/0/state', '2');
    const xbe = XsRingClient.open(host.context(be.domid));
    const beSeen: string[] = [];
    await xbe.watch(`${FE}/device`, 'be', (p) => beSeen.push(p));
    assert.equal(watchesOf(host, fe.domid), 1);
    assert.equal(xsStats(host).transactions, 1);
    // The frontend crashes (its guest code throws): the host destroys it.
    const out = await host.runGuests([
      {
        domid: fe.domid,
        main: () => {
          throw new Error('frontend bug');
        },
      },
    ]);
    assert.equal(out[0]!.ok, false);
    assert.equal(fe.alive, false);
    assert.equal(watchesOf(host, fe.domid), undefined);
    assert.equal(xsStats(host).transactions, 0);
    assert.deepEqual(xsStats(host).rings, [d0.domid, be.domid]);
    await xbe.waitFor(() => beSeen.length >= 2);
    assert.deepEqual(beSeen, [`${FE}/device`, `${FE}/device`], 'the removed tree, seen by the watcher');
    await x0.waitFor(() => released.length >= 2);
    assert.deepEqual(released, ['@releaseDomain', '@releaseDomain']);
    await assert.rejects(xbe.read(`${FE}/device/vbd/0/state`), /ENOENT|EACCES/);
    assert.deepEqual(await host.xenstore!.directory('/local/domain'), [String(d0.domid), String(be.domid)]);
    await teardown(host);
  });
});
