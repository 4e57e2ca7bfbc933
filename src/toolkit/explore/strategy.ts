// How the explorer picks the next guest at each step. Three strategies:
// - pct: probabilistic concurrency testing (Burckhardt et al., ASPLOS 2010):
//   random distinct priorities, the highest-priority runnable guest runs, and
//   at depth-1 random steps the running guest drops below all others. A bug
//   that needs d ordering constraints is found in each run with probability
//   at least 1/(n k^(d-1)) for n guests and k steps.
// - dfs: systematic, depth-first over every schedule with at most `depth`
//   preemptions (switching away from a guest that could go on); switching
//   when a guest waits or ends is free. Stops when all have been run.
// - replay: the choices of a replay token, one by one.

export interface Strategy {
  readonly name: string;
  /** Asked at every step, even with one guest runnable (PCT counts steps); else only at real choices. */
  readonly everyStep: boolean;
  /** Prepares schedule number `index` (0-based); false when there is nothing left to run. */
  begin(index: number): boolean;
  /**
   * Picks from `enabled` (guest indices, ascending). `current` is the guest
   * that ran last, -1 at the start; `preemptible` says it could go on (it
   * stopped at a step, not because it waits or ended). `step` counts picks.
   */
  choose(enabled: readonly number[], current: number, preemptible: boolean, step: number): number;
  /**
   * How many picks in a row, from step `from` on, would be `current` while
   * `enabled` stays as it is: the guest takes that many steps without
   * stopping to ask (each still goes through choose afterwards, in order).
   */
  runLength(enabled: readonly number[], current: number, from: number): number;
  /** The schedule ended after `steps` picks. */
  end(steps: number): void;
}

/** mulberry32: small, fast, deterministic per seed. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The seed of schedule `index` under `seed`. */
function scheduleSeed(seed: number, index: number): number {
  return (Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) + Math.imul(index + 1, 0xc2b2ae35)) >>> 0;
}

export class PctStrategy implements Strategy {
  readonly name = 'pct';
  readonly everyStep = true;
  private readonly seed: number;
  private readonly nGuests: number;
  private readonly depth: number;
  /** Estimate of the steps in a schedule (k): the longest seen so far. */
  private k: number;
  private priorities: number[] = [];
  private changes: number[] = [];

  constructor(seed: number, nGuests: number, depth: number, stepsEstimate = 64) {
    this.seed = seed;
    this.nGuests = nGuests;
    this.depth = Math.max(1, depth);
    this.k = stepsEstimate;
  }

  begin(index: number): boolean {
    const r = rng(scheduleSeed(this.seed, index));
    const d = this.depth;
    const order = Array.from({ length: this.nGuests }, (_, i) => i);
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(r() * (i + 1));
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    // Initial priorities d .. d+n-1; change point j lowers to d-1-j (below all initial ones).
    this.priorities = new Array<number>(this.nGuests);
    order.forEach((g, rank) => {
      this.priorities[g] = d + rank;
    });
    this.changes = [];
    for (let j = 0; j < d - 1; j++) this.changes.push(1 + Math.floor(r() * this.k));
    return true;
  }

  choose(enabled: readonly number[], _current: number, _preemptible: boolean, step: number): number {
    let best = this.highest(enabled);
    for (let j = 0; j < this.changes.length; j++) {
      if (this.changes[j] === step) {
        this.priorities[best] = this.depth - 1 - j;
        best = this.highest(enabled);
      }
    }
    return best;
  }

  runLength(enabled: readonly number[], current: number, from: number): number {
    if (this.highest(enabled) !== current) return 0;
    let next = Number.POSITIVE_INFINITY;
    for (const c of this.changes) if (c >= from && c < next) next = c;
    return next - from;
  }

  private highest(enabled: readonly number[]): number {
    let best = enabled[0]!;
    for (const g of enabled) if (this.priorities[g]! > this.priorities[best]!) best = g;
    return best;
  }

  end(steps: number): void {
    if (steps > this.k) this.k = steps;
  }
}

interface DfsNode {
  /** Alternatives in the order they are tried: the free choice first. */
  order: number[];
  /** Index in `order` of the choice taken. */
  at: number;
  /** Whether picking anything but order[0] costs a preemption. */
  preemptible: boolean;
  preemptionsBefore: number;
}

export class DfsStrategy implements Strategy {
  readonly name = 'dfs';
  readonly everyStep = false;
  private readonly bound: number;
  private stack: DfsNode[] = [];
  private pos = 0;
  private preemptions = 0;
  private started = false;

  constructor(preemptionBound: number) {
    this.bound = Math.max(0, preemptionBound);
  }

  begin(_index: number): boolean {
    if (this.started) {
      // Backtrack: the deepest choice with an alternative left within the bound.
      for (;;) {
        const top = this.stack[this.stack.length - 1];
        if (top === undefined) return false;
        const cost = top.preemptible ? 1 : 0;
        if (top.at + 1 < top.order.length && top.preemptionsBefore + cost <= this.bound) {
          top.at++;
          break;
        }
        this.stack.pop();
      }
    }
    this.started = true;
    this.pos = 0;
    this.preemptions = 0;
    return true;
  }

  choose(enabled: readonly number[], current: number, preemptible: boolean, _step: number): number {
    const node = this.stack[this.pos];
    if (node !== undefined) {
      this.pos++;
      const pick = node.order[node.at]!;
      if (node.at > 0 && node.preemptible) this.preemptions++;
      if (!enabled.includes(pick))
        throw new Error('dfs: the scenario is not deterministic (a replayed prefix offered other choices)');
      return pick;
    }
    const canGoOn = preemptible && enabled.includes(current);
    const first = canGoOn ? current : enabled[0]!;
    const order = [first, ...enabled.filter((g) => g !== first)];
    this.stack.push({ order, at: 0, preemptible: canGoOn, preemptionsBefore: this.preemptions });
    this.pos++;
    return first;
  }

  runLength(enabled: readonly number[], current: number, _from: number): number {
    if (enabled.length < 2) return Number.POSITIVE_INFINITY;
    let n = 0;
    for (let j = this.pos; j < this.stack.length; j++) {
      const node = this.stack[j]!;
      if (node.order[node.at] !== current) return n;
      n++;
    }
    return Number.POSITIVE_INFINITY;
  }

  end(_steps: number): void {}
}

export class ReplayStrategy implements Strategy {
  readonly name = 'replay';
  readonly everyStep = false;
  private readonly choices: readonly number[];
  private i = 0;

  constructor(choices: readonly number[]) {
    this.choices = choices;
  }

  begin(index: number): boolean {
    this.i = 0;
    return index === 0;
  }

  choose(enabled: readonly number[], current: number, preemptible: boolean, _step: number): number {
    const c = this.choices[this.i++];
    if (c === undefined) return preemptible && enabled.includes(current) ? current : enabled[0]!;
    if (!enabled.includes(c))
      throw new ReplayMismatch(
        `choice ${this.i} of the token is guest ${c}, which cannot run here (runnable: ${enabled.join(', ')})`,
      );
    return c;
  }

  runLength(enabled: readonly number[], current: number, _from: number): number {
    if (enabled.length < 2) return Number.POSITIVE_INFINITY;
    let n = 0;
    for (let j = this.i; j < this.choices.length; j++) {
      if (this.choices[j] !== current) return n;
      n++;
    }
    return Number.POSITIVE_INFINITY;
  }

  end(_steps: number): void {}
}

export class ReplayMismatch extends Error {
  constructor(why: string) {
    super(`the replay token does not fit this scenario: ${why}`);
    this.name = 'ReplayMismatch';
  }
}
