// Using the explorer inside a node:test suite: the racy frontend must fail
// (so this test documents that the explorer finds it), with a replay token.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { explore } from '../../src/index.ts';

it('the explorer catches the racy revoke and gives a token that replays it', async () => {
  const r = await explore({ scenario: new URL('./scenario.ts', import.meta.url), schedules: 1000 });
  assert.ok(r.failure !== null, 'the racy revoke went unnoticed');
  const again = await explore({
    scenario: new URL('./scenario.ts', import.meta.url),
    replay: r.failure.token,
  });
  assert.equal(again.failure?.message, r.failure.message);
});
