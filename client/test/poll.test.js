// The client without Pusher: long-poll from the real poller (Node has no
// EventSource, so this is the path a server-side user and any browser
// without EventSource take).

import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect, repollDelay } from '../client.js';
import { startDev, eventually, recorder } from './stack.js';

test('poll only', async (t) => {
  const stack = await startDev({ env: { LIVE_POLLER_RING_SIZE: '8' } });
  t.after(() => stack.stop());

  await t.test('the poller serves the module and the hook that are in client/', async () => {
    for (const [route, file] of [['/v1/client.js', 'client.js'], ['/v1/client/client.js', 'client.js'], ['/v1/client/react.js', 'react.js'], ['/v1/client.d.ts', 'client.d.ts']]) {
      const r = await fetch(stack.url + route);
      assert.equal(r.status, 200, route);
      if (file.endsWith('.js')) assert.match(r.headers.get('content-type'), /javascript/, route);
      assert.equal(await r.text(), readFileSync(new URL(`../${file}`, import.meta.url), 'utf8'), route);
    }
  });

  await t.test('a change published after connect arrives once, in seq order, and status is polling', async () => {
    const rec = recorder();
    const live = connect({ url: stack.url, eventId: 'poll1', ...rec });
    try {
      await eventually('status polling', () => live.getStatus() === 'polling');
      const sent = [];
      for (const type of ['vote.updated', 'phase.changed', 'vote.updated', 'blocks.updated']) {
        sent.push(await stack.publish('poll1', type, { n: sent.length }));
      }
      await eventually('4 changes', () => rec.changes.length >= 4);
      assert.deepEqual(rec.ids(), sent.map((s) => s.id));
      assert.deepEqual(rec.changes.map((c) => c.data.n), [0, 1, 2, 3]);
      for (let i = 1; i < rec.changes.length; i++) assert.ok(rec.changes[i].seq > rec.changes[i - 1].seq);
      assert.deepEqual(rec.statuses, ['polling']);
    } finally {
      live.close();
    }
  });

  await t.test("after an answer with changes the next long-poll waits a random part of /v1/config's repollSpreadMs", async () => {
    const cfg = await (await fetch(stack.url + '/v1/config')).json();
    assert.equal(cfg.repollSpreadMs, 250, 'the poller gives its linger');
    // Math.random near its top: every re-poll after changes waits about
    // the whole spread, which a gap can only exceed (timers are never
    // early), however loaded the machine.
    const random = Math.random;
    Math.random = () => 0.99;
    const rec = recorder();
    const log = [];
    const f = async (u, init) => {
      log.push({ kind: 'request', at: Date.now(), url: u });
      const r = await fetch(u, init);
      const text = r.status === 200 ? await r.clone().text() : '';
      log.push({ kind: 'answer', at: Date.now(), changes: u.includes('since=') && /"events":\[\{/.test(text) });
      return r;
    };
    const live = connect({ url: stack.url, eventId: 'pace1', fetch: f, ...rec });
    try {
      await eventually('status polling', () => live.getStatus() === 'polling');
      const sent = [];
      for (let i = 0; i < 3; i++) {
        sent.push((await stack.publish('pace1', 'vote.updated', { i })).id);
        await eventually(`change ${i}`, () => rec.changes.length === i + 1);
      }
      assert.deepEqual(rec.ids(), sent);
      await eventually('the re-poll after the last change', () => log.filter((e) => e.kind === 'answer' && e.changes).length === 3 && log.at(-1).kind === 'request');
      let paced = 0;
      for (let i = 0; i < log.length; i++) {
        if (log[i].kind !== 'answer' || !log[i].changes) continue;
        const next = log.slice(i + 1).find((e) => e.kind === 'request');
        const gap = next.at - log[i].at;
        assert.ok(gap >= 0.99 * 250 - 5, `re-polled ${gap} ms after an answer with changes, want about 247 ms`);
        paced++;
      }
      assert.equal(paced, 3);
    } finally {
      Math.random = random;
      live.close();
    }
  });

  await t.test('changes made before connect are the baseline, not news', async () => {
    await stack.publish('poll2', 'vote.updated', { before: true });
    const rec = recorder();
    const live = connect({ url: stack.url, eventId: 'poll2', ...rec });
    try {
      await eventually('status polling', () => live.getStatus() === 'polling');
      const after = await stack.publish('poll2', 'vote.updated', { before: false });
      await eventually('the new change', () => rec.changes.length >= 1);
      assert.deepEqual(rec.ids(), [after.id]);
    } finally {
      live.close();
    }
  });

  await t.test('a cursor older than the ring is served from the stream: every change once, in order, no reset', async () => {
    const rec = recorder();
    // A fetch the test can hold back: the poll that is parked keeps going,
    // the next waits until the gate opens, as a page frozen by the browser.
    let gate = null;
    const gatedFetch = async (u, init) => {
      if (gate) await gate.promise;
      return fetch(u, init);
    };
    // No re-poll pacing: the next long-poll must be parked before the gate closes.
    const live = connect({ url: stack.url, eventId: 'poll3', fetch: gatedFetch, repollSpread: 0, ...rec });
    try {
      await eventually('status polling', () => live.getStatus() === 'polling');
      const sent = [(await stack.publish('poll3', 'vote.updated', { n: 0 })).id];
      await eventually('first change', () => rec.changes.length === 1);
      let open;
      gate = { promise: new Promise((r) => (open = r)) };
      // The parked long-poll answers with the next change; the one after
      // waits at the gate while the ring (8) overflows.
      sent.push((await stack.publish('poll3', 'vote.updated', { n: 1 })).id);
      await eventually('second change', () => rec.changes.length === 2);
      for (let i = 2; i < 20; i++) sent.push((await stack.publish('poll3', i % 2 ? 'vote.updated' : 'phase.changed', { n: i })).id);
      gate = null;
      open();
      await eventually('all 20 changes', () => rec.changes.length >= 20);
      assert.deepEqual(rec.ids(), sent);
      assert.equal(rec.resets, 0);
    } finally {
      live.close();
    }
  });

  await t.test('an onChange that throws does not stop the client', async () => {
    const got = [];
    const errs = [];
    const orig = console.error;
    console.error = (...a) => errs.push(a);
    const live = connect({
      url: stack.url,
      eventId: 'throws',
      onChange(e) {
        got.push(e.id);
        if (got.length === 1) throw new Error('the page broke');
      },
    });
    try {
      await eventually('polling', () => live.getStatus() === 'polling');
      const a = await stack.publish('throws', 'vote.updated', {});
      const b = await stack.publish('throws', 'vote.updated', {});
      await eventually('both changes', () => got.length === 2);
      assert.deepEqual(got, [a.id, b.id]);
      assert.equal(errs.length, 1);
    } finally {
      console.error = orig;
      live.close();
    }
  });

  await t.test('close stops everything: no change is reported after it', async () => {
    const rec = recorder();
    const live = connect({ url: stack.url, eventId: 'poll4', ...rec });
    await eventually('status polling', () => live.getStatus() === 'polling');
    live.close();
    assert.equal(live.getStatus(), 'offline');
    await stack.publish('poll4', 'vote.updated', {});
    // A second client proves the change went out; the closed one stays silent.
    const rec2 = recorder();
    const probe = connect({ url: stack.url, eventId: 'poll4', ...rec2 });
    await eventually('probe polling', () => probe.getStatus() === 'polling');
    const c = await stack.publish('poll4', 'vote.updated', { probe: true });
    await eventually('probe sees it', () => rec2.changes.some((x) => x.id === c.id));
    probe.close();
    assert.equal(rec.changes.length, 0);
  });
});

test('a stream recreated under the client (dev restarted on a new data dir): onReset, then the new changes', async (t) => {
  let stack = await startDev();
  const ports = { httpPort: stack.httpPort, pusherPort: stack.pusherPort };
  t.after(() => stack.stop());
  const rec = recorder();
  const live = connect({ url: stack.url, eventId: 'gone', ...rec });
  try {
    await eventually('status polling', () => live.getStatus() === 'polling');
    for (let i = 0; i < 5; i++) await stack.publish('gone', 'vote.updated', { n: i });
    await eventually('5 changes', () => rec.changes.length === 5);
    await stack.stop();
    await eventually('offline while the poller is gone', () => live.getStatus() === 'offline');
    stack = await startDev(ports);
    // The client's cursor is ahead of the new stream: the poller says reset.
    await eventually('onReset', () => rec.resets === 1, 60_000);
    const after = await stack.publish('gone', 'phase.changed', { n: 'after' });
    await eventually('the change after the reset', () => rec.changes.some((c) => c.id === after.id), 60_000);
    assert.equal(rec.changes.length, 6);
    assert.equal(live.getStatus(), 'polling');
  } finally {
    live.close();
  }
});

test('rate limited (429 with Retry-After): the client waits as told and still gets every change', async (t) => {
  // One request per second per client (here: per address), burst 2.
  const stack = await startDev({ env: { LIVE_POLLER_RATE: '1', LIVE_POLLER_BURST: '2', LIVE_POLLER_MAX_WAIT: '1s' } });
  t.after(() => stack.stop());
  const rec = recorder();
  const answers = [];
  const f = async (u, init) => {
    const r = await fetch(u, init);
    answers.push({ at: Date.now(), status: r.status, retryAfter: Number(r.headers.get('Retry-After')) });
    return r;
  };
  const live = connect({ url: stack.url, eventId: 'rl', fetch: f, ...rec });
  try {
    await eventually('polling', () => live.getStatus() === 'polling');
    // A noisy neighbour on the same address spends the budget.
    let noisy = true;
    const noise = (async () => {
      while (noisy) {
        await (await fetch(`${stack.url}/v1/events/other/updates`)).text();
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    const sent = [];
    try {
      await eventually('the client gets a 429', () => answers.some((a) => a.status === 429));
      for (let i = 0; i < 3; i++) sent.push((await stack.publish('rl', 'vote.updated', { i })).id);
    } finally {
      noisy = false;
      await noise;
    }
    await eventually('every change', () => rec.changes.length === 3);
    assert.deepEqual(rec.ids(), sent);
    for (let i = 0; i + 1 < answers.length; i++) {
      const a = answers[i];
      if (a.status !== 429) continue;
      assert.ok(a.retryAfter >= 1, 'a 429 says when to retry');
      // The next request starts no sooner than Retry-After (the answer is
      // recorded a moment after the request was sent).
      const gap = answers[i + 1].at - a.at;
      assert.ok(gap >= a.retryAfter * 1000 - 50, `retried ${gap} ms after a 429 with Retry-After: ${a.retryAfter}`);
    }
  } finally {
    live.close();
  }
});

test('repollDelay is uniform in [0, spread), the spread capped to [0, 2000] ms', () => {
  assert.equal(repollDelay(250, () => 0), 0);
  assert.equal(repollDelay(250, () => 0.5), 125);
  assert.ok(repollDelay(250, () => 0.999999) < 250);
  assert.equal(repollDelay(0, () => 0.7), 0, 'a poller with the linger off: re-poll at once');
  assert.equal(repollDelay(-5, () => 0.7), 0);
  assert.ok(repollDelay(60_000, () => 0.999999) < 2000, 'capped');
  assert.equal(repollDelay(Number.NaN, () => 0.5), 125, 'an unreadable spread is the default 250');
  for (let i = 0; i < 1000; i++) {
    const d = repollDelay(300);
    assert.ok(d >= 0 && d < 300, `${d}`);
  }
});
