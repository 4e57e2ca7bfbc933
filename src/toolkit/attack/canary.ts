// The marker the victim's memory holds before its code runs. The victim's RAM
// starts filled with it, standing for whatever data a page held before (a
// previous user's, another connection's): a victim that shares or writes back
// memory it never wrote shows the marker to its peer, and the attacker, which
// looks for it in every byte it can read, reports the exposure.

/** 16 bytes; the first 8 are what the attacker looks for. */
export function canary(victimDomid: number): Uint8Array {
  return Uint8Array.of(
    0xde,
    0xad,
    0xca,
    0x4e,
    0x76, // 'v'
    0x69, // 'i'
    0x63, // 'c'
    0x74, // 't'
    victimDomid & 0xff,
    victimDomid >>> 8,
    0x5a,
    0x5a,
    0x5a,
    0x5a,
    0x5a,
    0xa5,
  );
}

const PREFIX = canary(0).subarray(0, 8);

/** Offset of the first marker prefix in `bytes`, or -1. */
export function findCanary(bytes: Uint8Array): number {
  const first = PREFIX[0]!;
  for (let i = bytes.indexOf(first); i >= 0 && i + 8 <= bytes.length; i = bytes.indexOf(first, i + 1)) {
    let k = 1;
    while (k < 8 && bytes[i + k] === PREFIX[k]) k++;
    if (k === 8) return i;
  }
  return -1;
}
