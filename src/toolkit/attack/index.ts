// The malicious peer: an adversary that plays either side of a split driver
// against a victim module, in worker threads (see victim.ts for the contract).
export { canary, findCanary } from './canary.ts';
export type { HarnessArgs, HarnessResult } from './harness.ts';
export { type AttackLogEntry, formatEntry, parseConsole } from './log.ts';
export { type AttackerArgs, AttackerDeath } from './peer.ts';
export { AttackRng } from './rng.ts';
export {
  type AttackFinding,
  type AttackOptions,
  type AttackReport,
  attack,
  builtInVictim,
  type FindingKind,
} from './runner.ts';
export {
  ATTACK_RING,
  type AttackProtocol,
  type AttackRole,
  fillByte,
  KEY_EVENT_CHANNEL,
  KEY_RING_REF,
  KEY_STATE,
  OP_READ,
  OP_WRITE,
  openPorts,
  parseU32,
  peerClosed,
  REQ_GREF,
  REQ_ID,
  REQ_LENGTH,
  REQ_OFFSET,
  REQ_OP,
  RSP_ID,
  RSP_STATUS,
  STATE_CLOSED,
  type VictimArgs,
} from './victim.ts';
