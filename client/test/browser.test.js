// End to end in Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core): two pages on dev's demo see each other's changes through
// pusher-js; the WebSocket side is stopped and both keep seeing changes by
// polling (EventSource, in a browser); it comes back and both return to
// live; no change is missed or shown twice.

import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { startDev, eventually, WsProxy, exists } from './stack.js';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

async function launch() {
  assert.ok(exists(CHROMIUM), `${CHROMIUM} is missing: run apt-get install -y chromium (make test does it as root)`);
  const profile = mkdtempSync(path.join(os.tmpdir(), 'liveupdates-chromium-'));
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
  });
  return {
    ctx,
    async close() {
      await ctx.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

const demoState = (page) => page.evaluate(() => ({ status: window.demo.status, changes: window.demo.changes, statuses: window.demo.statuses }));
const statusOf = async (page) => (await demoState(page)).status;

async function seen(page, ids) {
  const s = await demoState(page);
  const have = new Set(s.changes.map((c) => c.id));
  return ids.every((id) => have.has(id));
}

// pages opens demo pages in one Chromium and records every poller answer.
function demoPages(browser, stack, errors, responses) {
  return async (tab, query) => {
    const page = await browser.ctx.newPage();
    page.on('pageerror', (e) => errors.push(`${tab}: ${e.message}`));
    page.on('response', (r) => responses.push({ tab, url: r.url(), status: r.status() }));
    await page.goto(`${stack.url}/demo/${query.eventId}?tab=${tab}&${query.params}`);
    return page;
  };
}

// publisher clicks a demo button and returns the id the page got back.
function publisher(sent) {
  return async (page, button) => {
    const before = await page.evaluate(() => window.demo.sent.length);
    await page.click(button);
    await eventually('the publish answer', async () => (await page.evaluate(() => window.demo.sent.length)) > before);
    sent.push(await page.evaluate(() => window.demo.sent.at(-1).id));
  };
}

async function assertEachOnceInOrder(pages, sent) {
  for (const p of pages) {
    const s = await demoState(p);
    assert.deepEqual(s.changes.map((c) => c.id), sent, `each change once, in order (${s.statuses.join('→')})`);
    const seqs = s.changes.map((c) => c.seq);
    assert.deepEqual([...seqs].sort((x, y) => x - y), seqs);
  }
}

test('demo in Chromium', async (t) => {
  // Long-polls expire after 1 s so the If-None-Match/304 path shows quickly.
  const stack = await startDev({ env: { LIVE_POLLER_MAX_WAIT: '1s' } });
  t.after(() => stack.stop());
  const browser = await launch();
  t.after(() => browser.close());

  await t.test('without Pusher: two pages by EventSource, two by long-poll with 304s', async () => {
    const errors = [];
    const responses = [];
    const open = demoPages(browser, stack, errors, responses);
    const sent = [];
    const click = publisher(sent);
    const sse = [await open('S1', { eventId: 'nopusher', params: 'pusher=off' }), await open('S2', { eventId: 'nopusher', params: 'pusher=off' })];
    const lp = [await open('L1', { eventId: 'nopusher', params: 'pusher=off&sse=off' }), await open('L2', { eventId: 'nopusher', params: 'pusher=off&sse=off' })];
    const pages = [...sse, ...lp];
    await eventually('all pages polling', async () => (await Promise.all(pages.map(statusOf))).every((s) => s === 'polling'));
    await click(sse[0], '#vote');
    await click(lp[0], '#phase');
    // Let a long-poll expire with a matching If-None-Match: the browser must
    // hand the 304 to the page, not a cached 200.
    await eventually('a 304 on /updates', () => responses.some((r) => r.tab.startsWith('L') && r.url.includes('/updates') && r.status === 304));
    await click(lp[1], '#vote');
    await eventually('every page sees every change', async () => {
      for (const p of pages) if (!(await seen(p, sent))) return false;
      return true;
    });
    await assertEachOnceInOrder(pages, sent);
    assert.ok(responses.some((r) => r.tab.startsWith('S') && r.url.includes('/stream') && r.status === 200), 'the S pages used EventSource');
    assert.ok(!responses.some((r) => r.tab.startsWith('S') && r.url.includes('wait=')), 'the S pages did not long-poll');

    // A hidden page stops polling; visible again, it catches up at once.
    const setVisibility = (page, v) => page.evaluate((state) => {
      Object.defineProperty(document, 'visibilityState', { value: state, configurable: true });
      document.dispatchEvent(new Event('visibilitychange'));
    }, v);
    const requestsOf = (tab) => responses.filter((r) => r.tab === tab && /\/(updates|stream)/.test(r.url)).length;
    await setVisibility(sse[1], 'hidden');
    await setVisibility(lp[1], 'hidden');
    const before = { S2: requestsOf('S2'), L2: requestsOf('L2') };
    await click(sse[0], '#vote');
    await eventually('the visible pages see it', async () => (await seen(sse[0], sent)) && (await seen(lp[0], sent)));
    // L1 long-polls with 1 s waits: once it has polled twice more, a hidden
    // L2 that kept polling would have done so too.
    const l1 = requestsOf('L1');
    await eventually('L1 polls on', () => requestsOf('L1') >= l1 + 2);
    assert.ok(!(await seen(sse[1], sent)) && !(await seen(lp[1], sent)), 'a hidden page got a change');
    assert.deepEqual({ S2: requestsOf('S2'), L2: requestsOf('L2') }, before, 'a hidden page kept polling');
    await setVisibility(sse[1], 'visible');
    await setVisibility(lp[1], 'visible');
    await eventually('visible again, they catch up', async () => (await seen(sse[1], sent)) && (await seen(lp[1], sent)));
    await assertEachOnceInOrder(pages, sent);

    // The network goes away: offline; it comes back: caught up at once.
    await browser.ctx.setOffline(true);
    await eventually('all pages offline', async () => (await Promise.all(pages.map(statusOf))).every((st) => st === 'offline'));
    sent.push((await stack.publish('nopusher', 'vote.updated', { while: 'offline' })).id);
    await browser.ctx.setOffline(false);
    await eventually('every page sees the change made while offline', async () => {
      for (const p of pages) if (!(await seen(p, sent))) return false;
      return true;
    });
    await eventually('all pages polling again', async () => (await Promise.all(pages.map(statusOf))).every((st) => st === 'polling'));
    await assertEachOnceInOrder(pages, sent);
    assert.deepEqual(errors, []);
    for (const p of pages) await p.close();
  });

  await t.test('with pusher-js: two pages live, polling while the WebSocket side is stopped, live again', async () => {
    const cfg = await stack.config();
    const proxy = new WsProxy(Number(cfg.pusher.port ?? cfg.pusher.wsPort));
    await proxy.start();
    t.after(() => proxy.stop());
    const errors = [];
    const responses = [];
    const open = demoPages(browser, stack, errors, responses);
    const sent = [];
    const click = publisher(sent);
    const query = { eventId: 'e2e', params: `wsPort=${proxy.port}&fallbackAfter=2000` };
    const a = await open('A', query);
    const b = await open('B', query);
    const pages = [a, b];
    const bothSee = (what) => eventually(what, async () => (await seen(a, sent)) && (await seen(b, sent)));
    const bothAre = (s, ms) => eventually(`both pages ${s}`, async () => (await statusOf(a)) === s && (await statusOf(b)) === s, ms);

    await bothAre('live');
    await click(a, '#vote');
    await click(b, '#phase');
    await bothSee("each other's changes over the WebSocket");
    for (const p of pages) {
      const s = await demoState(p);
      assert.ok(s.changes.every((c) => c.via === 'live'), `came over the WebSocket: ${JSON.stringify(s.changes)}`);
    }

    await proxy.stop();
    await bothAre('polling');
    await click(a, '#vote');
    await click(b, '#vote');
    await bothSee("each other's changes by polling");
    await a.screenshot({ path: process.env.DEMO_SCREENSHOT || path.join(os.tmpdir(), 'liveupdates-demo-polling.png') });

    await proxy.start(proxy.port);
    await bothAre('live', 60_000);
    await click(b, '#vote');
    await click(a, '#phase');
    await bothSee("each other's changes over the WebSocket again");

    await assertEachOnceInOrder(pages, sent);
    for (const p of pages) {
      const s = await demoState(p);
      assert.deepEqual(s.changes.map((c) => c.via), ['live', 'live', 'polling', 'polling', 'live', 'live']);
    }
    assert.deepEqual(errors, []);
  });
});
