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

test('demo in Chromium: two pages, WebSocket, polling, WebSocket again', async (t) => {
  const stack = await startDev();
  t.after(() => stack.stop());
  const cfg = await stack.config();
  const proxy = new WsProxy(Number(cfg.pusher.port ?? cfg.pusher.wsPort));
  await proxy.start();
  t.after(() => proxy.stop());
  const browser = await launch();
  t.after(() => browser.close());

  const errors = [];
  const openPage = async (tab) => {
    const page = await browser.ctx.newPage();
    page.on('pageerror', (e) => errors.push(`${tab}: ${e.message}`));
    await page.goto(`${stack.url}/demo/e2e?tab=${tab}&wsPort=${proxy.port}&fallbackAfter=2000`);
    return page;
  };
  const a = await openPage('A');
  const b = await openPage('B');
  const pages = [a, b];
  const sent = [];
  const click = async (page, button) => {
    const before = (await page.evaluate(() => window.demo.sent.length));
    await page.click(button);
    await eventually('the publish answer', async () => (await page.evaluate(() => window.demo.sent.length)) > before);
    sent.push(await page.evaluate(() => window.demo.sent.at(-1).id));
  };
  const bothSee = (what) => eventually(what, async () => (await seen(a, sent)) && (await seen(b, sent)));
  const bothAre = (s, ms) => eventually(`both pages ${s}`, async () => (await statusOf(a)) === s && (await statusOf(b)) === s, ms);

  await bothAre('live');
  await click(a, '#vote');
  await click(b, '#phase');
  await bothSee('each other\'s changes over the WebSocket');
  for (const p of pages) {
    const s = await demoState(p);
    assert.ok(s.changes.every((c) => c.via === 'live'), `came over the WebSocket: ${JSON.stringify(s.changes)}`);
  }

  await proxy.stop();
  await bothAre('polling');
  await click(a, '#vote');
  await click(b, '#vote');
  await bothSee('each other\'s changes by polling');
  await a.screenshot({ path: process.env.DEMO_SCREENSHOT || path.join(os.tmpdir(), 'liveupdates-demo-polling.png') });

  await proxy.start(proxy.port);
  await bothAre('live', 60_000);
  await click(b, '#vote');
  await click(a, '#phase');
  await bothSee('each other\'s changes over the WebSocket again');

  for (const p of pages) {
    const s = await demoState(p);
    const ids = s.changes.map((c) => c.id);
    assert.deepEqual(ids, sent, `each change once, in order (${s.statuses.join('→')})`);
    const seqs = s.changes.map((c) => c.seq);
    assert.deepEqual([...seqs].sort((x, y) => x - y), seqs);
    assert.equal(s.changes.filter((c) => c.via === 'polling').length, 2);
  }
  assert.deepEqual(errors, []);
});
