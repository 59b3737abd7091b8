// A hot event: the poller's long-poll answers say "Live-Transport: sse"
// (LIVE_POLLER_HOT_LONGPOLLS=1 here: every long-poll is hot), and the
// client moves to the SSE stream from its cursor; under Node 20 (no
// EventSource) through the fetch-based reader. Against the real poller.

import test from 'node:test';
import assert from 'node:assert/strict';
import { connect, sseParser } from '../client.js';
import { startDev, eventually, recorder } from './stack.js';

test('sseParser reads the stream as the SSE spec does', () => {
  const got = [];
  const feed = sseParser((type, data, id) => got.push({ type, data, id }), (ms) => got.push({ retry: ms }));
  // Line ends of all three kinds, split across chunks (a CR at a chunk's
  // end, its LF in the next), data lines joined, comments skipped, an event
  // without data dropped, an unnamed event called "message".
  for (const chunk of ['retry: 1500\n\n: heartbeat\n\nid: 7\nevent: vote.updated\ndata: {"a":\r', '\ndata: 1}\r', '\n\r\nevent: x\n\nid: 8\ndata:plain\n', '\n']) feed(chunk);
  assert.deepEqual(got, [
    { retry: 1500 },
    { type: 'vote.updated', data: '{"a":\n1}', id: '7' },
    { type: 'message', data: 'plain', id: '8' },
  ]);
});

/** logging wraps fetch, recording each URL it is asked for. */
function logging(log, inner = fetch) {
  return (u, init) => {
    log.push(u);
    return inner(u, init);
  };
}

const isStream = (u) => u.includes('/stream');
const isLongPoll = (u) => u.includes('/updates') && /[?&]wait=\d/.test(u);

test('hot event', async (t) => {
  const stack = await startDev({ env: { LIVE_POLLER_HOT_LONGPOLLS: '1' } });
  t.after(() => stack.stop());

  await t.test('/v1/config names the header and the threshold', async () => {
    const c = await stack.config();
    assert.equal(c.transportHeader, 'Live-Transport');
    assert.equal(c.hotLongPolls, 1);
  });

  await t.test('a hot event switches to the stream and still gets every change exactly once in order', async () => {
    const rec = recorder();
    const log = [];
    const live = connect({ url: stack.url, eventId: 'hot1', fetch: logging(log), ...rec });
    try {
      await eventually('a long-poll', () => log.some(isLongPoll));
      assert.match(log.find(isLongPoll), /[?&]transport=sse(&|$)/, 'a client that can stream says so');
      // Changes while the client long-polls, moves and streams: published
      // back to back, some land between the hinted answer and the stream.
      const sent = [];
      for (let i = 0; i < 10; i++) sent.push((await stack.publish('hot1', 'vote.updated', { i })).id);
      await eventually('the stream', () => log.some(isStream));
      for (let i = 10; i < 20; i++) sent.push((await stack.publish('hot1', 'vote.updated', { i })).id);
      await eventually('20 changes', () => rec.changes.length >= 20);
      const first = log.findIndex(isStream);
      await eventually('a 21st change through the stream', async () => {
        sent.push((await stack.publish('hot1', 'vote.updated', { i: sent.length })).id);
        return rec.changes.length === sent.length;
      });
      assert.deepEqual(rec.ids(), sent, 'every change once, in order');
      for (let i = 1; i < rec.changes.length; i++) assert.ok(rec.changes[i].seq > rec.changes[i - 1].seq);
      assert.ok(!log.slice(first + 1).some(isLongPoll), `no long-poll once the stream runs: ${JSON.stringify(log.slice(first))}`);
      assert.equal(log.filter(isStream).length, 1, 'one stream');
      assert.deepEqual(rec.statuses, ['polling']);
    } finally {
      live.close();
    }
  });

  await t.test('the stream breaking mid-way falls back to long-poll without loss or repeat', async () => {
    const rec = recorder();
    const log = [];
    let broke = false;
    let streams = 0;
    // The first stream passes its first two changes, then breaks in the
    // middle of the third one's bytes.
    const cutting = async (u, init) => {
      const r = await fetch(u, init);
      if (!isStream(u) || ++streams !== 1) return r;
      const reader = r.body.getReader();
      let events = 0;
      const body = new ReadableStream({
        async pull(ctl) {
          const { done, value } = await reader.read();
          if (done) return ctl.close();
          const n = (Buffer.from(value).toString().match(/^id: /gm) || []).length;
          if (n > 0 && events >= 2) {
            ctl.enqueue(value.subarray(0, Math.floor(value.length / 2)));
            broke = true;
            ctl.error(new Error('connection cut'));
            reader.cancel().catch(() => {});
            return;
          }
          events += n;
          ctl.enqueue(value);
        },
        cancel() {
          return reader.cancel();
        },
      });
      return new Response(body, { status: r.status, headers: r.headers });
    };
    const live = connect({ url: stack.url, eventId: 'hot2', fetch: logging(log, cutting), ...rec });
    try {
      // The event is hot and the client says it can stream: it moves
      // before any change, so every change starts through the stream.
      await eventually('the stream', () => log.some(isStream));
      const sent = [(await stack.publish('hot2', 'vote.updated', { i: 0 })).id];
      await eventually('the first change', () => rec.changes.length === 1);
      // The second change passes through the stream; the third is cut
      // there, and long-poll must bring it.
      sent.push((await stack.publish('hot2', 'vote.updated', { i: 1 })).id);
      await eventually('the second change', () => rec.changes.length === 2);
      const cursor = rec.changes[1].seq;
      const first = log.findIndex(isStream);
      assert.ok(!log.slice(first + 1).some(isLongPoll), 'the second change came through the stream');
      sent.push((await stack.publish('hot2', 'vote.updated', { i: 2 })).id);
      await eventually('the break', () => broke);
      await eventually('a long-poll after the break', () => log.slice(first + 1).some(isLongPoll));
      const after = log.slice(first + 1).find(isLongPoll);
      assert.match(after, new RegExp(`since=${cursor}(&|$)`), 'long-poll resumes from the last change the stream brought');
      for (let i = 0; i < 5; i++) sent.push((await stack.publish('hot2', 'vote.updated', { i: sent.length })).id);
      await eventually('every change', () => rec.changes.length >= sent.length);
      // Still hinted, the client takes the stream again (after its retry:).
      await eventually('the stream again', () => log.filter(isStream).length === 2, 30_000);
      await eventually('a change through the second stream', async () => {
        sent.push((await stack.publish('hot2', 'vote.updated', { i: sent.length })).id);
        return rec.changes.length === sent.length;
      });
      assert.deepEqual(rec.ids(), sent, 'every change once, in order');
      for (let i = 1; i < rec.changes.length; i++) assert.ok(rec.changes[i].seq > rec.changes[i - 1].seq);
      assert.deepEqual(rec.statuses, ['polling']);
    } finally {
      live.close();
    }
  });

  await t.test('on an event already hot, the client moves to the stream before any change', async () => {
    const rec = recorder();
    const log = [];
    const live = connect({ url: stack.url, eventId: 'hot4', fetch: logging(log), ...rec });
    try {
      // Nothing is published: the poller answers the long-poll at once
      // with the hint, and the first change comes through the stream.
      await eventually('the stream', () => log.some(isStream));
      assert.equal(rec.changes.length, 0);
      const sent = [(await stack.publish('hot4', 'vote.updated', { i: 0 })).id];
      await eventually('the change', () => rec.changes.length === 1);
      const first = log.findIndex(isStream);
      assert.ok(!log.slice(first + 1).some(isLongPoll), `no long-poll once the stream runs: ${JSON.stringify(log)}`);
      assert.deepEqual(rec.ids(), sent);
    } finally {
      live.close();
    }
  });

  await t.test('with sse: false the client keeps long-polling a hot event', async () => {
    const rec = recorder();
    const log = [];
    const live = connect({ url: stack.url, eventId: 'hot3', fetch: logging(log), sse: false, ...rec });
    try {
      await eventually('a long-poll', () => log.some(isLongPoll));
      const sent = [];
      for (let i = 0; i < 3; i++) {
        sent.push((await stack.publish('hot3', 'vote.updated', { i })).id);
        await eventually(`change ${i}`, () => rec.changes.length === i + 1);
      }
      await eventually('the next long-poll', () => log.filter(isLongPoll).length >= 4);
      assert.deepEqual(rec.ids(), sent);
      assert.ok(!log.some(isStream));
      assert.ok(!log.some((u) => u.includes('transport=')), 'a client that cannot stream does not say it can');
    } finally {
      live.close();
    }
  });
});
