// Loaded before every test file (test/run.mjs): fast-check runs with a fixed
// seed so CI is repeatable. GNTTAB_FC_SEED=<n> picks another; GNTTAB_FC_SEED=random
// lets fast-check draw one (printed with any failure) to hunt for new counterexamples.
import fc from 'fast-check';

const s = process.env.GNTTAB_FC_SEED;
if (s !== 'random') fc.configureGlobal({ seed: s === undefined ? 0x6e77_7461 : Number(s) | 0 });
