// Golden vectors for the event-channel ABI: every EVTCHNOP_ number and struct
// offset of xen/include/public/event_channel.h, and the shared_info / vcpu_info
// offsets of xen/include/public/xen.h and arch-x86/xen.h, x86_64 (xen_ulong_t
// and unsigned long are 8 bytes, XEN_LEGACY_MAX_VCPUS is 32).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as abi from '../../src/abi/index.ts';
import { decodeStruct, encodeStruct } from '../../src/abi/struct.ts';
import { itMatchesLayouts, type Layout } from '../helpers/layout.ts';

// [struct, size, [field, offset, size]...] as the C compiler lays them out on x86_64.
const layouts: Layout[] = [
  [
    abi.evtchn_alloc_unbound,
    8,
    [
      ['dom', 0, 2],
      ['remote_dom', 2, 2],
      ['port', 4, 4],
    ],
  ],
  [
    // domid_t, 2 bytes of padding, then two evtchn_port_t.
    abi.evtchn_bind_interdomain,
    12,
    [
      ['remote_dom', 0, 2],
      ['remote_port', 4, 4],
      ['local_port', 8, 4],
    ],
  ],
  [
    abi.evtchn_bind_virq,
    12,
    [
      ['virq', 0, 4],
      ['vcpu', 4, 4],
      ['port', 8, 4],
    ],
  ],
  [
    abi.evtchn_bind_pirq,
    12,
    [
      ['pirq', 0, 4],
      ['flags', 4, 4],
      ['port', 8, 4],
    ],
  ],
  [
    abi.evtchn_bind_ipi,
    8,
    [
      ['vcpu', 0, 4],
      ['port', 4, 4],
    ],
  ],
  [abi.evtchn_close, 4, [['port', 0, 4]]],
  [abi.evtchn_send, 4, [['port', 0, 4]]],
  [
    // dom (2), pad (2), port, status, vcpu, then union u: 8 bytes, 4-aligned.
    abi.evtchn_status,
    24,
    [
      ['dom', 0, 2],
      ['port', 4, 4],
      ['status', 8, 4],
      ['vcpu', 12, 4],
      ['u_dom', 16, 2],
      ['u_port', 20, 4],
    ],
  ],
  [
    abi.evtchn_status_irq,
    24,
    [
      ['dom', 0, 2],
      ['port', 4, 4],
      ['status', 8, 4],
      ['vcpu', 12, 4],
      ['u_irq', 16, 4],
    ],
  ],
  [
    abi.evtchn_bind_vcpu,
    8,
    [
      ['port', 0, 4],
      ['vcpu', 4, 4],
    ],
  ],
  [abi.evtchn_unmask, 4, [['port', 0, 4]]],
  [abi.evtchn_reset, 2, [['dom', 0, 2]]],
  [
    // u64 control_gfn, u32 offset, u32 vcpu, u8 link_bits, u8 _pad[7].
    abi.evtchn_init_control,
    24,
    [
      ['control_gfn', 0, 8],
      ['offset', 8, 4],
      ['vcpu', 12, 4],
      ['link_bits', 16, 1],
    ],
  ],
  [abi.evtchn_expand_array, 8, [['array_gfn', 0, 8]]],
  [
    abi.evtchn_set_priority,
    8,
    [
      ['port', 0, 4],
      ['priority', 4, 4],
    ],
  ],
  [
    // u8 upcall_pending, u8 upcall_mask, 6 bytes pad, xen_ulong_t pending_sel,
    // arch_vcpu_info { cr2, pad } (16), vcpu_time_info (32): 64 bytes.
    abi.vcpu_info,
    64,
    [
      ['evtchn_upcall_pending', 0, 1],
      ['evtchn_upcall_mask', 1, 1],
      ['evtchn_pending_sel', 8, 8],
      ['arch_cr2', 16, 8],
      ['arch_pad', 24, 8],
      ['time_version', 32, 4],
      ['time_pad0', 36, 4],
      ['tsc_timestamp', 40, 8],
      ['system_time', 48, 8],
      ['tsc_to_system_mul', 56, 4],
      ['tsc_shift', 60, 1],
    ],
  ],
];

describe('event-channel struct layouts (event_channel.h, xen.h; x86_64)', () => {
  itMatchesLayouts(layouts);

  it('evtchn_status: an interdomain answer as the C struct holds it', () => {
    const b = encodeStruct(abi.evtchn_status, {
      dom: abi.DOMID_SELF,
      port: 7,
      status: abi.EVTCHNSTAT_interdomain,
      vcpu: 1,
      u_dom: 3,
      u_port: 0x1234,
    });
    assert.deepEqual(
      [...b],
      [0xf0, 0x7f, 0, 0, 7, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 3, 0, 0, 0, 0x34, 0x12, 0, 0],
    );
    // u.virq is the same first 4 bytes of the union.
    const v = encodeStruct(abi.evtchn_status_irq, { status: abi.EVTCHNSTAT_virq, u_irq: abi.VIRQ_CON_RING });
    assert.equal(decodeStruct(abi.evtchn_status, v).u_dom, abi.VIRQ_CON_RING);
  });

  it('evtchn_alloc_unbound and bind_interdomain as a guest kernel fills them', () => {
    assert.deepEqual(
      [...encodeStruct(abi.evtchn_alloc_unbound, { dom: abi.DOMID_SELF, remote_dom: 5, port: 9 })],
      [0xf0, 0x7f, 5, 0, 9, 0, 0, 0],
    );
    assert.deepEqual(
      [...encodeStruct(abi.evtchn_bind_interdomain, { remote_dom: 1, remote_port: 0x101, local_port: 2 })],
      [1, 0, 0, 0, 1, 1, 0, 0, 2, 0, 0, 0],
    );
  });
});

describe('event-channel constants', () => {
  it('hypercall 32 and the EVTCHNOP_ numbers (event_channel.h)', () => {
    assert.equal(abi.__HYPERVISOR_event_channel_op, 32);
    assert.deepEqual(
      [
        abi.EVTCHNOP_bind_interdomain,
        abi.EVTCHNOP_bind_virq,
        abi.EVTCHNOP_bind_pirq,
        abi.EVTCHNOP_close,
        abi.EVTCHNOP_send,
        abi.EVTCHNOP_status,
        abi.EVTCHNOP_alloc_unbound,
        abi.EVTCHNOP_bind_ipi,
        abi.EVTCHNOP_bind_vcpu,
        abi.EVTCHNOP_unmask,
        abi.EVTCHNOP_reset,
        abi.EVTCHNOP_init_control,
        abi.EVTCHNOP_expand_array,
        abi.EVTCHNOP_set_priority,
        abi.EVTCHNOP_reset_cont,
      ],
      [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14],
    );
    assert.equal(abi.EVTCHNOP_NAMES[abi.EVTCHNOP_alloc_unbound], 'alloc_unbound');
    assert.equal(abi.EVTCHNOP_NAMES[abi.EVTCHNOP_unmask], 'unmask');
    assert.equal(abi.EVTCHNOP_NAMES.length, 15);
  });

  it('EVTCHNSTAT_ values and BIND_PIRQ__WILL_SHARE', () => {
    assert.deepEqual(
      [
        abi.EVTCHNSTAT_closed,
        abi.EVTCHNSTAT_unbound,
        abi.EVTCHNSTAT_interdomain,
        abi.EVTCHNSTAT_pirq,
        abi.EVTCHNSTAT_virq,
        abi.EVTCHNSTAT_ipi,
      ],
      [0, 1, 2, 3, 4, 5],
    );
    assert.deepEqual(abi.EVTCHNSTAT_NAMES, ['closed', 'unbound', 'interdomain', 'pirq', 'virq', 'ipi']);
    assert.equal(abi.BIND_PIRQ__WILL_SHARE, 1);
  });

  it('VIRQ numbers (xen.h)', () => {
    assert.deepEqual(
      [
        abi.VIRQ_TIMER,
        abi.VIRQ_DEBUG,
        abi.VIRQ_CONSOLE,
        abi.VIRQ_DOM_EXC,
        abi.VIRQ_TBUF,
        abi.VIRQ_DEBUGGER,
        abi.VIRQ_XENOPROF,
        abi.VIRQ_CON_RING,
        abi.VIRQ_PCPU_STATE,
        abi.VIRQ_MEM_EVENT,
        abi.VIRQ_ARGO,
        abi.VIRQ_ENOMEM,
        abi.VIRQ_XENPMU,
      ],
      [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13],
    );
    assert.deepEqual([abi.VIRQ_ARCH_0, abi.VIRQ_ARCH_7, abi.NR_VIRQS], [16, 23, 24]);
  });

  it('XENMAPSPACE_shared_info is space 0 (memory.h)', () => {
    assert.equal(abi.XENMAPSPACE_shared_info, 0);
    assert.equal(abi.XENMAPSPACE_grant_table, 1);
  });

  it('2-level ABI sizes: 64-bit words, 4096 ports, 32 legacy vCPUs', () => {
    assert.equal(abi.BITS_PER_EVTCHN_WORD, 64);
    assert.equal(abi.EVTCHN_2L_NR_CHANNELS, 4096);
    assert.equal(abi.XEN_LEGACY_MAX_VCPUS, 32);
  });

  it('struct shared_info offsets (x86_64)', () => {
    // vcpu_info[32] (64 bytes each), then evtchn_pending[64] and evtchn_mask[64] (u64 each),
    // wc_version, wc_sec, wc_nsec, wc_sec_hi (u32), then arch_shared_info (6 x u64).
    assert.equal(abi.SHARED_INFO_VCPU_INFO, 0);
    assert.equal(abi.VCPU_INFO_SIZE, 64);
    assert.equal(abi.SHARED_INFO_EVTCHN_PENDING, 2048);
    assert.equal(abi.SHARED_INFO_EVTCHN_MASK, 2560);
    assert.equal(abi.SHARED_INFO_WC_VERSION, 3072);
    assert.equal(abi.SHARED_INFO_WC_SEC, 3076);
    assert.equal(abi.SHARED_INFO_WC_NSEC, 3080);
    assert.equal(abi.SHARED_INFO_WC_SEC_HI, 3084);
    assert.equal(abi.SHARED_INFO_ARCH, 3088);
    assert.equal(abi.SHARED_INFO_SIZE, 3136);
    assert.ok(abi.SHARED_INFO_SIZE <= abi.XEN_PAGE_SIZE);
    assert.deepEqual(
      [abi.VCPU_INFO_UPCALL_PENDING, abi.VCPU_INFO_UPCALL_MASK, abi.VCPU_INFO_PENDING_SEL],
      [0, 1, 8],
    );
    assert.deepEqual([0, 1, 31].map(abi.vcpuInfoOffset), [0, 64, 1984]);
    // The Int32 a guest sleeps on is the 4-aligned word starting at upcall_pending.
    assert.equal(abi.vcpuInfoOffset(5) % 4, 0);
  });
});
