// Golden vectors for the public ABI: every offset and size of reference §3 (x86_64,
// compiled from xen/include/public/grant_table.h), every constant of §2.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as abi from '../../src/abi/index.ts';
import {
  decodeStruct,
  encodeStruct,
  type FieldType,
  getField,
  type StructDef,
  setField,
} from '../../src/abi/struct.ts';
import { itMatchesLayouts, type Layout } from '../helpers/layout.ts';

// [struct, size, [field, offset, size]...] exactly as reference §3.1/§3.2 list them.
const layouts: Layout[] = [
  [
    abi.grant_entry_v1,
    8,
    [
      ['flags', 0, 2],
      ['domid', 2, 2],
      ['frame', 4, 4],
    ],
  ],
  [
    abi.grant_entry_header,
    4,
    [
      ['flags', 0, 2],
      ['domid', 2, 2],
    ],
  ],
  [
    abi.grant_entry_v2_full_page,
    16,
    [
      ['flags', 0, 2],
      ['domid', 2, 2],
      ['pad0', 4, 4],
      ['frame', 8, 8],
    ],
  ],
  [
    abi.grant_entry_v2_sub_page,
    16,
    [
      ['flags', 0, 2],
      ['domid', 2, 2],
      ['page_off', 4, 2],
      ['length', 6, 2],
      ['frame', 8, 8],
    ],
  ],
  [
    abi.grant_entry_v2_transitive,
    16,
    [
      ['flags', 0, 2],
      ['domid', 2, 2],
      ['trans_domid', 4, 2],
      ['pad0', 6, 2],
      ['gref', 8, 4],
    ],
  ],
  [
    abi.gnttab_map_grant_ref,
    32,
    [
      ['host_addr', 0, 8],
      ['flags', 8, 4],
      ['ref', 12, 4],
      ['dom', 16, 2],
      ['status', 18, 2],
      ['handle', 20, 4],
      ['dev_bus_addr', 24, 8],
    ],
  ],
  [
    abi.gnttab_unmap_grant_ref,
    24,
    [
      ['host_addr', 0, 8],
      ['dev_bus_addr', 8, 8],
      ['handle', 16, 4],
      ['status', 20, 2],
    ],
  ],
  [
    abi.gnttab_setup_table,
    24,
    [
      ['dom', 0, 2],
      ['nr_frames', 4, 4],
      ['status', 8, 2],
      ['frame_list', 16, 8],
    ],
  ],
  [
    abi.gnttab_dump_table,
    4,
    [
      ['dom', 0, 2],
      ['status', 2, 2],
    ],
  ],
  [
    abi.gnttab_transfer,
    24,
    [
      ['mfn', 0, 8],
      ['domid', 8, 2],
      ['ref', 12, 4],
      ['status', 16, 2],
    ],
  ],
  [
    abi.gnttab_copy,
    40,
    [
      ['source_u', 0, 8],
      ['source_domid', 8, 2],
      ['source_offset', 10, 2],
      ['dest_u', 16, 8],
      ['dest_domid', 24, 2],
      ['dest_offset', 26, 2],
      ['len', 32, 2],
      ['flags', 34, 2],
      ['status', 36, 2],
    ],
  ],
  [
    abi.gnttab_copy_ptr,
    16,
    [
      ['u', 0, 8],
      ['domid', 8, 2],
      ['offset', 10, 2],
    ],
  ],
  [
    abi.gnttab_query_size,
    16,
    [
      ['dom', 0, 2],
      ['nr_frames', 4, 4],
      ['max_nr_frames', 8, 4],
      ['status', 12, 2],
    ],
  ],
  [
    abi.gnttab_unmap_and_replace,
    24,
    [
      ['host_addr', 0, 8],
      ['new_addr', 8, 8],
      ['handle', 16, 4],
      ['status', 20, 2],
    ],
  ],
  [abi.gnttab_set_version, 4, [['version', 0, 4]]],
  [
    abi.gnttab_get_status_frames,
    16,
    [
      ['nr_frames', 0, 4],
      ['dom', 4, 2],
      ['status', 6, 2],
      ['frame_list', 8, 8],
    ],
  ],
  [
    abi.gnttab_get_version,
    8,
    [
      ['dom', 0, 2],
      ['version', 4, 4],
    ],
  ],
  [
    abi.gnttab_swap_grant_ref,
    12,
    [
      ['ref_a', 0, 4],
      ['ref_b', 4, 4],
      ['status', 8, 2],
    ],
  ],
  [
    abi.gnttab_cache_flush,
    16,
    [
      ['a', 0, 8],
      ['offset', 8, 2],
      ['length', 10, 2],
      ['op', 12, 4],
    ],
  ],
  [
    abi.xen_add_to_physmap,
    24,
    [
      ['domid', 0, 2],
      ['size', 2, 2],
      ['space', 4, 4],
      ['idx', 8, 8],
      ['gpfn', 16, 8],
    ],
  ],
];

describe('ABI struct layouts (reference §3)', () => {
  itMatchesLayouts(layouts);

  it('u64 fields carry values above 2^32 and status is signed', () => {
    const b = encodeStruct(abi.gnttab_map_grant_ref, {
      host_addr: 0x1_2345_6000,
      status: -13,
      dev_bus_addr: 2 ** 40,
    });
    assert.deepEqual([...b.subarray(0, 8)], [0x00, 0x60, 0x45, 0x23, 0x01, 0, 0, 0]);
    assert.deepEqual([...b.subarray(18, 20)], [0xf3, 0xff]);
    const v = decodeStruct(abi.gnttab_map_grant_ref, b);
    assert.equal(v.host_addr, 0x1_2345_6000);
    assert.equal(v.status, -13);
    assert.equal(v.dev_bus_addr, 2 ** 40);
  });

  it('a u64 field is written modulo 2^64, negative, NaN and fractions as C converts them to uint64_t', () => {
    // [value, the 8 bytes, little-endian]
    const cases: [number, number[]][] = [
      [2 ** 53 + 2, [2, 0, 0, 0, 0, 0, 0x20, 0]],
      [2 ** 64 + 4096, [0, 0x10, 0, 0, 0, 0, 0, 0]],
      [0xffff_ffff, [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]],
      [2 ** 32, [0, 0, 0, 0, 1, 0, 0, 0]],
      [-5, [0, 0, 0, 0, 0, 0, 0, 0]],
      [Number.NaN, [0, 0, 0, 0, 0, 0, 0, 0]],
      [4097.9, [1, 0x10, 0, 0, 0, 0, 0, 0]],
    ];
    const def = abi.gnttab_map_grant_ref;
    for (const [value, bytes] of cases) {
      const generic = encodeStruct(def, { dev_bus_addr: value });
      assert.deepEqual([...generic.subarray(24, 32)], bytes, `setField ${value}`);
      const compiled = new Uint8Array(def.size);
      def.encode(new DataView(compiled.buffer), 0, {
        ...def.decode(new DataView(generic.buffer), 0),
        dev_bus_addr: value,
      });
      assert.deepEqual(compiled, generic, `encode ${value}`);
      const one = new Uint8Array(def.size);
      def.at.dev_bus_addr.set(new DataView(one.buffer), 0, value);
      assert.deepEqual(one, generic, `at.dev_bus_addr.set ${value}`);
    }
  });

  it('a v1 entry (flags, domid) reads as one little-endian u32 flags | domid << 16 (§3.1)', () => {
    const b = encodeStruct(abi.grant_entry_v1, {
      flags: abi.GTF_permit_access | abi.GTF_readonly,
      domid: 7,
      frame: 0x1234,
    });
    assert.equal(
      new DataView(b.buffer).getUint32(0, true),
      abi.GTF_permit_access | abi.GTF_readonly | (7 << 16),
    );
    assert.deepEqual([...b], [5, 0, 7, 0, 0x34, 0x12, 0, 0]);
  });
});

/** Every struct the abi exports (grant entries, GNTTABOP_, memory and event-channel ops). */
const allStructs = (Object.values(abi) as unknown[]).filter(
  (x): x is StructDef => typeof x === 'object' && x !== null && 'list' in x && 'at' in x,
);

describe('compiled accessors against the generic codec (getField / setField)', () => {
  // A fixed LCG, so a failure names values that come back on every run.
  let seed = 0x2545f491;
  const next = (): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed;
  };
  const sample = (t: FieldType): number => {
    switch (t) {
      case 'u8':
        return next() & 0xff;
      case 'u16':
        return next() & 0xffff;
      case 'i16':
        return ((next() & 0xffff) << 16) >> 16;
      case 'u32':
        return next();
      case 'u64':
        return (next() & 0x1f_ffff) * 0x1_0000_0000 + next();
    }
  };

  it('every struct of the layout table above is among them', () => {
    const names = new Set(allStructs.map((d) => d.name));
    for (const [d] of layouts) assert.ok(names.has(d.name), d.name);
  });

  for (const def of allStructs) {
    it(`${def.name}: decode, decodeInto, encode and each field's get/set read and write the generic codec's bytes`, () => {
      // At an odd base inside a larger buffer: the compiled code assumes no alignment.
      const base = 3;
      for (let round = 0; round < 20; round++) {
        const value = Object.fromEntries(def.list.map(([k, f]) => [k, sample(f.type)]));
        const generic = new DataView(new ArrayBuffer(def.size + 8));
        for (const [k, f] of def.list) setField(generic, base, f, value[k]!);
        const compiled = new DataView(new ArrayBuffer(def.size + 8));
        def.encode(compiled, base, value);
        assert.deepEqual(new Uint8Array(compiled.buffer), new Uint8Array(generic.buffer), 'encode');
        const byField = new DataView(new ArrayBuffer(def.size + 8));
        for (const [k] of def.list) def.at[k]!.set(byField, base, value[k]!);
        assert.deepEqual(new Uint8Array(byField.buffer), new Uint8Array(generic.buffer), 'at[].set');
        const read = Object.fromEntries(def.list.map(([k, f]) => [k, getField(generic, base, f)]));
        assert.deepEqual(read, value, 'getField round trip');
        assert.deepEqual(def.decode(generic, base), read, 'decode');
        const into = Object.fromEntries(def.list.map(([k]) => [k, -1]));
        assert.equal(def.decodeInto(generic, base, into), into);
        assert.deepEqual(into, read, 'decodeInto');
        for (const [k] of def.list) assert.equal(def.at[k]!.get(generic, base), read[k], `at.${k}.get`);
      }
    });
  }
});

describe('ABI constants (reference §2)', () => {
  it('hypercall and GNTTABOP numbers (§2.1)', () => {
    assert.equal(abi.__HYPERVISOR_grant_table_op, 20);
    assert.equal(abi.__HYPERVISOR_memory_op, 12);
    assert.equal(abi.__HYPERVISOR_update_va_mapping, 14);
    assert.equal(abi.__HYPERVISOR_event_channel_op, 32);
    const ops = [
      abi.GNTTABOP_map_grant_ref,
      abi.GNTTABOP_unmap_grant_ref,
      abi.GNTTABOP_setup_table,
      abi.GNTTABOP_dump_table,
      abi.GNTTABOP_transfer,
      abi.GNTTABOP_copy,
      abi.GNTTABOP_query_size,
      abi.GNTTABOP_unmap_and_replace,
      abi.GNTTABOP_set_version,
      abi.GNTTABOP_get_status_frames,
      abi.GNTTABOP_get_version,
      abi.GNTTABOP_swap_grant_ref,
      abi.GNTTABOP_cache_flush,
    ];
    assert.deepEqual(ops, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    assert.equal(abi.GNTTABOP_CMD_MASK, 0xfff);
    assert.equal(abi.XENMEM_add_to_physmap, 7);
    assert.equal(abi.XENMAPSPACE_grant_table, 1);
    assert.equal(abi.XENMAPIDX_grant_table_status, 0x80000000);
  });

  it('errno values (§2.1)', () => {
    assert.deepEqual(
      [
        abi.XEN_EPERM,
        abi.XEN_ESRCH,
        abi.XEN_EAGAIN,
        abi.XEN_ENOMEM,
        abi.XEN_EFAULT,
        abi.XEN_EBUSY,
        abi.XEN_EINVAL,
      ],
      [1, 3, 11, 12, 14, 16, 22],
    );
    assert.deepEqual([abi.XEN_ERANGE, abi.XEN_ENOSYS, abi.XEN_EILSEQ, abi.XEN_EOPNOTSUPP], [34, 38, 84, 95]);
    assert.equal(abi.errnoName(-22), '-EINVAL');
  });

  it('GTF flags (§2.2), including the bits shared between types', () => {
    assert.deepEqual(
      [
        abi.GTF_invalid,
        abi.GTF_permit_access,
        abi.GTF_accept_transfer,
        abi.GTF_transitive,
        abi.GTF_type_mask,
      ],
      [0, 1, 2, 3, 3],
    );
    assert.deepEqual(
      [
        abi.GTF_readonly,
        abi.GTF_reading,
        abi.GTF_writing,
        abi.GTF_PWT,
        abi.GTF_PCD,
        abi.GTF_PAT,
        abi.GTF_sub_page,
      ],
      [4, 8, 0x10, 0x20, 0x40, 0x80, 0x100],
    );
    assert.equal(abi.GTF_transfer_committed, abi.GTF_readonly);
    assert.equal(abi.GTF_transfer_completed, abi.GTF_reading);
  });

  it('GNTMAP, GNTCOPY and cache-flush flags (§2.3, §2.4)', () => {
    assert.deepEqual(
      [
        abi.GNTMAP_device_map,
        abi.GNTMAP_host_map,
        abi.GNTMAP_readonly,
        abi.GNTMAP_application_map,
        abi.GNTMAP_contains_pte,
      ],
      [1, 2, 4, 8, 16],
    );
    assert.equal(abi.GNTMAP_guest_avail_mask, 0xffff0000);
    assert.deepEqual([abi.GNTCOPY_source_gref, abi.GNTCOPY_dest_gref], [1, 2]);
    assert.deepEqual(
      [abi.GNTTAB_CACHE_CLEAN, abi.GNTTAB_CACHE_INVAL, abi.GNTTAB_CACHE_SOURCE_GREF],
      [1, 2, 0x80000000],
    );
  });

  it('GNTST codes and Xen message strings (§2.5)', () => {
    const expected: [number, number, string][] = [
      [abi.GNTST_okay, 0, 'okay'],
      [abi.GNTST_general_error, -1, 'undefined error'],
      [abi.GNTST_bad_domain, -2, 'unrecognised domain id'],
      [abi.GNTST_bad_gntref, -3, 'invalid grant reference'],
      [abi.GNTST_bad_handle, -4, 'invalid mapping handle'],
      [abi.GNTST_bad_virt_addr, -5, 'invalid virtual address'],
      [abi.GNTST_bad_dev_addr, -6, 'invalid device address'],
      [abi.GNTST_no_device_space, -7, 'no spare translation slot in the I/O MMU'],
      [abi.GNTST_permission_denied, -8, 'permission denied'],
      [abi.GNTST_bad_page, -9, 'bad page'],
      [abi.GNTST_bad_copy_arg, -10, 'copy arguments cross page boundary'],
      [abi.GNTST_address_too_big, -11, 'page address size too large'],
      [abi.GNTST_eagain, -12, 'operation not done; try again'],
      [abi.GNTST_no_space, -13, 'out of space'],
    ];
    for (const [code, value, msg] of expected) {
      assert.equal(code, value);
      assert.equal(abi.gntstMessage(code), msg);
    }
    assert.equal(abi.GNTTABOP_error_msgs.length, 14);
  });

  it('domain ids (§2.6)', () => {
    assert.deepEqual(
      [
        abi.DOMID_FIRST_RESERVED,
        abi.DOMID_SELF,
        abi.DOMID_IO,
        abi.DOMID_XEN,
        abi.DOMID_COW,
        abi.DOMID_INVALID,
        abi.DOMID_ANY,
      ],
      [0x7ff0, 0x7ff0, 0x7ff1, 0x7ff2, 0x7ff3, 0x7ff4, 0x7ff5],
    );
    assert.deepEqual([abi.DOMID_IDLE, abi.DOMID_MASK], [0x7fff, 0x7fff]);
  });

  it('sizes, limits and defaults (§2.7)', () => {
    assert.equal(abi.GRANT_PER_FRAME_V1, 512);
    assert.equal(abi.GRANT_PER_FRAME_V2, 256);
    assert.equal(abi.GRANT_STATUS_PER_FRAME, 2048);
    assert.equal(abi.GNTTAB_NR_RESERVED_ENTRIES, 8);
    assert.equal(abi.DEFAULT_MAX_GRANT_FRAMES, 64);
    assert.equal(abi.DEFAULT_MAX_MAPTRACK_FRAMES, 1024);
    assert.equal(abi.MAPTRACK_PER_PAGE, 256);
    assert.deepEqual([1, 7, 8, 9, 16, 64].map(abi.statusFramesFor), [1, 1, 1, 2, 2, 8]);
    assert.deepEqual(
      [abi.GNTPIN_hstw_inc, abi.GNTPIN_hstr_inc, abi.GNTPIN_devw_inc, abi.GNTPIN_devr_inc],
      [0x1, 0x100, 0x10000, 0x1000000],
    );
  });
});
