// The client with the real pusher-js 8.6.0 against `liveupdates dev`: the
// relay forwards to dev's Pusher-compatible WebSocket server, which pusher-js
// reaches through a proxy the test controls (close with a code, refuse,
// stop), while the poller stays up for the catch-up and the fallback.

import test from 'node:test';
import assert from 'node:assert/strict';
import Pusher from 'pusher-js';
import { connect } from '../client.js';
import { startDev, eventually, recorder, WsProxy } from './stack.js';

// pusherPort reads the WebSocket port from /v1/config, whichever of the
// documented spellings the poller uses.
function pusherPort(cfg) {
  const p = cfg.pusher || {};
  const port = p.port ?? p.wsPort;
  assert.ok(port, `/v1/config names no Pusher port: ${JSON.stringify(cfg)}`);
  return Number(port);
}

async function metric(stack, name) {
  const text = await (await fetch(`${stack.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return line ? Number(line.split(' ').pop()) : 0;
}

// counted wraps fetch to count the client's requests to the poller.
function counted() {
  const f = async (u, init) => {
    f.n++;
    if (f.gate) await f.gate;
    return fetch(u, init);
  };
  f.n = 0;
  f.gate = null;
  return f;
}

function assertOnceInOrder(rec, wantIds) {
  const ids = rec.ids();
  assert.equal(new Set(ids).size, ids.length, `a change was reported twice: ${ids}`);
  for (let i = 1; i < rec.changes.length; i++) {
    assert.ok(rec.changes[i].seq > rec.changes[i - 1].seq, `seq order broken at ${i}: ${rec.changes.map((c) => c.seq)}`);
  }
  if (wantIds) assert.deepEqual(ids, wantIds);
}

test('with pusher-js', async (t) => {
  const stack = await startDev();
  t.after(() => stack.stop());
  const cfg = await stack.config();
  const proxy = new WsProxy(pusherPort(cfg));
  await proxy.start();
  t.after(() => proxy.stop());

  const open = (eventId, rec, extra = {}) =>
    connect({
      url: stack.url,
      eventId,
      Pusher,
      fallbackAfter: 1500,
      pusherOptions: { wsPort: proxy.port, wssPort: proxy.port },
      ...rec,
      ...extra,
    });

  await t.test('changes arrive over the WebSocket once, in seq order, with no poll', async () => {
    const rec = recorder();
    const f = counted();
    const live = open('ws1', rec, { fetch: f });
    try {
      await eventually('live', () => live.getStatus() === 'live');
      const before = f.n;
      const sent = [];
      for (const type of ['vote.updated', 'phase.changed', 'blocks.updated']) sent.push((await stack.publish('ws1', type, { type })).id);
      await eventually('3 changes', () => rec.changes.length >= 3);
      assertOnceInOrder(rec, sent);
      assert.equal(f.n, before, 'live changes must not cost a poll');
      assert.deepEqual(rec.statuses, ['live']);
    } finally {
      live.close();
    }
  });

  await t.test('closed with 4200 and refused: polls, then back to live, nothing missed or repeated', async () => {
    const rec = recorder();
    const live = open('ws2', rec);
    const sent = [];
    try {
      await eventually('live', () => live.getStatus() === 'live');
      sent.push((await stack.publish('ws2', 'vote.updated', { n: 0 })).id);
      await eventually('first change', () => rec.changes.length === 1);
      proxy.mode = 'refuse';
      proxy.closeAll(4200);
      await eventually('polling', () => live.getStatus() === 'polling');
      for (let i = 1; i <= 3; i++) sent.push((await stack.publish('ws2', 'vote.updated', { n: i })).id);
      await eventually('changes by polling', () => rec.changes.length === 4);
      proxy.mode = 'open';
      await eventually('live again', () => live.getStatus() === 'live', 60_000);
      sent.push((await stack.publish('ws2', 'phase.changed', { n: 4 })).id);
      await eventually('change after return', () => rec.changes.length === 5);
      assertOnceInOrder(rec, sent);
      assert.ok(rec.statuses.includes('polling'));
      assert.equal(rec.statuses.at(-1), 'live');
    } finally {
      proxy.mode = 'open';
      live.close();
    }
  });

  await t.test('WebSocket server stopped: polls, then live when it is back', async () => {
    const rec = recorder();
    const live = open('ws3', rec);
    const sent = [];
    try {
      await eventually('live', () => live.getStatus() === 'live');
      await proxy.stop();
      await eventually('polling', () => live.getStatus() === 'polling');
      for (let i = 0; i < 3; i++) sent.push((await stack.publish('ws3', 'vote.updated', { n: i })).id);
      await eventually('changes by polling', () => rec.changes.length === 3);
      await proxy.start(proxy.port);
      await eventually('live again', () => live.getStatus() === 'live', 60_000);
      sent.push((await stack.publish('ws3', 'vote.updated', { n: 3 })).id);
      await eventually('change after return', () => rec.changes.length === 4);
      assertOnceInOrder(rec, sent);
    } finally {
      if (!proxy.server) await proxy.start(proxy.port);
      live.close();
    }
  });

  await t.test('changes held during a slow catch-up and also in its answer are reported once', async () => {
    const rec = recorder();
    const f = counted();
    const live = open('ws4', rec, { fetch: f });
    const sent = [];
    try {
      await eventually('live', () => live.getStatus() === 'live');
      sent.push((await stack.publish('ws4', 'vote.updated', { n: 0 })).id);
      await eventually('first', () => rec.changes.length === 1);
      // Hold the next catch-up at the gate: pusher-js reconnects at once
      // after 4200 and delivers live while the catch-up waits.
      let release;
      f.gate = new Promise((r) => (release = r));
      const n = f.n;
      proxy.closeAll(4200);
      await eventually('catch-up asked', () => f.n > n);
      for (let i = 1; i <= 3; i++) sent.push((await stack.publish('ws4', 'vote.updated', { n: i })).id);
      // Whatever arrives now is held, not reported.
      assert.equal(rec.changes.length, 1);
      assert.notEqual(live.getStatus(), 'live');
      f.gate = null;
      release();
      await eventually('live', () => live.getStatus() === 'live');
      await eventually('4 changes', () => rec.changes.length >= 4);
      sent.push((await stack.publish('ws4', 'vote.updated', { n: 4 })).id);
      await eventually('5 changes', () => rec.changes.length >= 5);
      assertOnceInOrder(rec, sent);
    } finally {
      live.close();
    }
  });

  await t.test('a steady flow across repeated 4200 closes: every change once, in order', async () => {
    const rec = recorder();
    const live = open('ws5', rec);
    const sent = [];
    try {
      await eventually('live', () => live.getStatus() === 'live');
      let stop = false;
      const flow = (async () => {
        let i = 0;
        while (!stop) {
          sent.push((await stack.publish('ws5', i % 3 ? 'vote.updated' : 'phase.changed', { i: i++ })).id);
          await new Promise((r) => setTimeout(r, 20));
        }
      })();
      for (let k = 0; k < 4; k++) {
        const target = sent.length + 5;
        await eventually('5 more changes sent and most received', () => sent.length >= target && rec.changes.length >= target - 3);
        proxy.closeAll(4200);
        // Each close is noticed (connecting) and ends in live again.
        await eventually(`live for the ${k + 2}th time`, () => rec.statuses.filter((s) => s === 'live').length === k + 2);
      }
      stop = true;
      await flow;
      await eventually(`all ${sent.length} changes`, () => rec.changes.length >= sent.length);
      assertOnceInOrder(rec, sent);
    } finally {
      live.close();
    }
  });

  await t.test('more than a page missed while away: the catch-up pages through them before going live', async () => {
    const rec = recorder();
    // No fallback while away (pusher-js keeps "connecting"): only the
    // catch-up on the next subscription can bring what was missed.
    const live = open('ws8', rec, { fallbackAfter: 600_000, pusherOptions: { wsPort: proxy.port, unavailableTimeout: 600_000 } });
    try {
      await eventually('live', () => live.getStatus() === 'live');
      const first = (await stack.publish('ws8', 'vote.updated', { n: -1 })).id;
      await eventually('first', () => rec.changes.length === 1);
      proxy.mode = 'refuse';
      proxy.closeAll(4200);
      await eventually('connecting', () => live.getStatus() === 'connecting');
      // 1,200 changes: more than one page (1,000) of a deep resume.
      const sent = [first];
      for (let b = 0; b < 3; b++) {
        const batch = Array.from({ length: 400 }, (_, i) => ({ eventId: 'ws8', type: 'vote.updated', data: { n: b * 400 + i } }));
        const r = await fetch(`${stack.url}/v1/publish`, {
          method: 'POST',
          headers: { Authorization: 'Bearer dev', 'Content-Type': 'application/json' },
          body: JSON.stringify(batch),
        });
        const body = await r.json();
        assert.ok(r.ok, JSON.stringify(body));
        for (const x of body.results) sent.push(x.id);
      }
      assert.equal(rec.changes.length, 1);
      assert.equal(live.getStatus(), 'connecting');
      proxy.mode = 'open';
      await eventually('live again', () => live.getStatus() === 'live', 60_000);
      // Live means caught up: everything is there at that moment.
      assert.equal(rec.changes.length, sent.length);
      assertOnceInOrder(rec, sent);
    } finally {
      proxy.mode = 'open';
      live.close();
    }
  });

  await t.test('gzip+base64 and ref:true changes arrive decoded', async () => {
    const rec = recorder();
    const live = open('ws6', rec);
    try {
      await eventually('live', () => live.getStatus() === 'live');
      const z0 = await metric(stack, 'liveupdates_relay_compressed_events_total');
      const r0 = await metric(stack, 'liveupdates_relay_referenced_events_total');
      // Over 10 KB and compressible: sent gzip+base64.
      const big = { text: 'vote '.repeat(4000) };
      // Over 10 KB even compressed: sent as a reference.
      const noise = { noise: Buffer.from(Array.from({ length: 30_000 }, () => Math.floor(Math.random() * 256))).toString('base64') };
      const a = await stack.publish('ws6', 'blocks.updated', big);
      const b = await stack.publish('ws6', 'availability.updated', noise);
      await eventually('2 changes', () => rec.changes.length >= 2);
      assertOnceInOrder(rec, [a.id, b.id]);
      assert.deepEqual(rec.changes[0].data, big);
      assert.equal(rec.changes[0].enc, undefined);
      assert.deepEqual(rec.changes[1].data, noise);
      assert.equal(rec.changes[1].ref, undefined);
      assert.equal(await metric(stack, 'liveupdates_relay_compressed_events_total'), z0 + 1, 'the first went gzip+base64');
      assert.equal(await metric(stack, 'liveupdates_relay_referenced_events_total'), r0 + 1, 'the second went by reference');
    } finally {
      live.close();
    }
  });

  await t.test('without DecompressionStream a gzip+base64 change is fetched from the poller instead', async () => {
    const saved = globalThis.DecompressionStream;
    delete globalThis.DecompressionStream;
    const rec = recorder();
    const live = open('ws9', rec);
    try {
      await eventually('live', () => live.getStatus() === 'live');
      const big = { text: 'phase '.repeat(4000) };
      const a = await stack.publish('ws9', 'phase.changed', big);
      await eventually('the change', () => rec.changes.length === 1);
      assertOnceInOrder(rec, [a.id]);
      assert.deepEqual(rec.changes[0].data, big);
      assert.equal(rec.changes[0].enc, undefined);
    } finally {
      globalThis.DecompressionStream = saved;
      live.close();
    }
  });

  await t.test('reconnect() and close(): a new socket, the same cursor; nothing after close', async () => {
    const rec = recorder();
    const live = open('ws7', rec);
    try {
      await eventually('live', () => live.getStatus() === 'live');
      const a = await stack.publish('ws7', 'vote.updated', {});
      await eventually('a', () => rec.changes.length === 1);
      live.reconnect();
      await eventually('live after reconnect', () => live.getStatus() === 'live');
      const b = await stack.publish('ws7', 'vote.updated', {});
      await eventually('b', () => rec.changes.length === 2);
      assertOnceInOrder(rec, [a.id, b.id]);
      live.close();
      assert.equal(live.getStatus(), 'offline');
      const c = await stack.publish('ws7', 'vote.updated', {});
      const rec2 = recorder();
      const probe = open('ws7', rec2);
      await eventually('probe live', () => probe.getStatus() === 'live');
      const d = await stack.publish('ws7', 'vote.updated', {});
      await eventually('probe sees d', () => rec2.changes.some((x) => x.id === d.id));
      probe.close();
      assert.ok(!rec.ids().includes(c.id) && !rec.ids().includes(d.id));
    } finally {
      live.close();
    }
  });
});

test('private channels with a poll token', async (t) => {
  const stack = await startDev({ env: { LIVE_POLL_SECRET: 'a-poll-secret-of-32-bytes-000000', LIVE_RELAY_PRIVATE_CHANNELS: 'true' } });
  t.after(() => stack.stop());
  const cfg = await stack.config();
  assert.equal(cfg.pusher.private, true);
  const mint = async (eventId) => {
    const r = await fetch(`${stack.url}/v1/tokens`, {
      method: 'POST',
      headers: { Authorization: 'Bearer dev', 'Content-Type': 'application/json' },
      body: JSON.stringify({ eventId }),
    });
    assert.equal(r.status, 200, await r.clone().text());
    return (await r.json()).token;
  };

  await t.test('the token signs its own event\'s private channel: live, and changes arrive', async () => {
    const rec = recorder();
    const live = connect({ url: stack.url, eventId: 'priv1', token: await mint('priv1'), Pusher, ...rec });
    try {
      await eventually('live', () => live.getStatus() === 'live');
      const a = await stack.publish('priv1', 'vote.updated', { secret: true });
      await eventually('the change', () => rec.changes.length === 1);
      assertOnceInOrder(rec, [a.id]);
    } finally {
      live.close();
    }
  });

  await t.test('another event\'s token is refused on both sides: never live, nothing delivered', async () => {
    const rec = recorder();
    const f = counted();
    const live = connect({ url: stack.url, eventId: 'priv2', token: await mint('other'), Pusher, fetch: f, fallbackAfter: 500, ...rec });
    try {
      // It tries the poller (403) after the refused subscription.
      await eventually('polls refused', () => f.n >= 3);
      await stack.publish('priv2', 'vote.updated', {});
      const n = f.n;
      await eventually('more refused polls', () => f.n > n);
      assert.equal(rec.changes.length, 0);
      assert.ok(!rec.statuses.includes('live'), rec.statuses.join());
    } finally {
      live.close();
    }
  });
});
