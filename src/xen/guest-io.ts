// Xen's copy_from_guest / copy_to_guest for the op structs of src/abi. A struct
// inside one page is read and written in place in machine memory; one that
// crosses a page goes through a bounce buffer, page by page.
import { XEN_PAGE_SIZE } from '../abi/limits.ts';
import {
  decodeFromView,
  decodeStruct,
  encodeStruct,
  encodeToView,
  type FieldAccessor,
  type StructDef,
  type StructValue,
} from '../abi/struct.ts';
import type { Domain } from './domain.ts';
import type { Hypervisor } from './hypervisor.ts';
import { ADDRESS_SPACE_PAGES } from './paging.ts';

/**
 * guest_handle_okay: an array of `count` elements of `size` bytes at addr lies
 * in the guest's address space. For a translated guest (paging_mode_external)
 * it is always true: each element's own copy faults instead.
 */
export function guestHandleOkay(d: Domain, addr: number, count: number, size: number): boolean {
  return d.translated || addr + count * size <= ADDRESS_SPACE_PAGES * XEN_PAGE_SIZE;
}

/** Machine address of [addr, addr+len) when it lies in one mapped page, else -1. */
function inOnePage(d: Domain, addr: number, len: number, write: boolean): number {
  // Beyond the address space nothing is mapped; below it, & is % on an integer.
  if (!(addr >= 0 && addr < ADDRESS_SPACE_PAGES * XEN_PAGE_SIZE)) return -1;
  const off = addr & (XEN_PAGE_SIZE - 1);
  if (off + len > XEN_PAGE_SIZE) return -1;
  const base = d.translatePage(addr, write);
  return base < 0 ? -1 : base + off;
}

/** Reads one struct from guest memory; null on a fault. */
export function copyStructFromGuest<F extends string>(
  hv: Hypervisor,
  d: Domain,
  addr: number,
  def: StructDef<F>,
): StructValue<F> | null {
  const m = inOnePage(d, addr, def.size, false);
  if (m >= 0) return decodeFromView(def, hv.machine.view, m);
  const bytes = hv.copyFromGuest(d, addr, def.size);
  return bytes === null ? null : decodeStruct(def, bytes);
}

/**
 * copyStructFromGuest into `out`, for paths that decode one struct per
 * element: allocates nothing when the struct lies in one page. False on a fault.
 */
export function copyStructFromGuestInto<F extends string>(
  hv: Hypervisor,
  d: Domain,
  addr: number,
  def: StructDef<F>,
  out: StructValue<F>,
): boolean {
  const m = inOnePage(d, addr, def.size, false);
  if (m >= 0) {
    def.decodeInto(hv.machine.view, m, out);
    return true;
  }
  const bytes = hv.copyFromGuest(d, addr, def.size);
  if (bytes === null) return false;
  def.decodeInto(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength), 0, out);
  return true;
}

/** Writes a whole struct back; false on a fault. */
export function copyStructToGuest<F extends string>(
  hv: Hypervisor,
  d: Domain,
  addr: number,
  def: StructDef<F>,
  value: StructValue<F>,
): boolean {
  const m = inOnePage(d, addr, def.size, true);
  if (m >= 0) {
    encodeToView(def, hv.machine.view, m, value);
    return true;
  }
  return hv.copyToGuest(d, addr, encodeStruct(def, value));
}

/** __copy_field_to_guest: writes back one field of the struct at addr. */
export function copyFieldToGuest<F extends string>(
  hv: Hypervisor,
  d: Domain,
  addr: number,
  def: StructDef<F>,
  field: F,
  value: number,
): boolean {
  return putFieldToGuest(hv, d, addr, def.at[field], value);
}

/**
 * copyFieldToGuest with the field's compiled accessor in hand (a hot path
 * keeps it in a constant): the struct is at addr; false on a fault.
 */
export function putFieldToGuest(
  hv: Hypervisor,
  d: Domain,
  addr: number,
  f: FieldAccessor,
  value: number,
): boolean {
  const m = inOnePage(d, addr + f.offset, f.size, true);
  if (m >= 0) {
    f.set(hv.machine.view, m - f.offset, value);
    return true;
  }
  const bytes = new Uint8Array(f.size);
  f.set(new DataView(bytes.buffer), -f.offset, value);
  return hv.copyToGuest(d, addr + f.offset, bytes);
}

/** Writes one u64 array element (a frame list entry); a negative value writes all ones (INVALID_GFN). */
export function copyU64ToGuest(hv: Hypervisor, d: Domain, addr: number, value: number): boolean {
  const bytes = new Uint8Array(8);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, value < 0 ? 0xffffffff : value % 0x1_0000_0000, true);
  view.setUint32(4, value < 0 ? 0xffffffff : Math.floor(value / 0x1_0000_0000), true);
  return hv.copyToGuest(d, addr, bytes);
}
