// useLiveUpdates under React 18 (react-test-renderer, no DOM) against a
// real poller: status and lastChange render, options.onChange is the
// latest one passed, and unmounting closes the client.

import test from 'node:test';
import assert from 'node:assert/strict';
import React from 'react';
import TestRenderer from 'react-test-renderer';
import { useLiveUpdates } from '../react.js';
import { startDev, eventually } from './stack.js';

test('useLiveUpdates', async (t) => {
  const stack = await startDev();
  t.after(() => stack.stop());

  let rendered = { status: null, lastChange: null };
  function View({ onChange }) {
    rendered = useLiveUpdates('hook1', { url: stack.url, onChange });
    return React.createElement('p', null, rendered.status);
  }
  const first = [];
  const second = [];
  let root;
  await TestRenderer.act(async () => {
    root = TestRenderer.create(React.createElement(View, { onChange: (e) => first.push(e.id) }));
  });
  await eventually('status polling', () => rendered.status === 'polling');
  assert.equal(root.toJSON().children[0], 'polling');

  const a = await stack.publish('hook1', 'vote.updated', { n: 1 });
  await eventually('lastChange a', () => rendered.lastChange && rendered.lastChange.id === a.id);
  assert.deepEqual(first, [a.id]);

  // A new onChange (an inline function on every render) is used without
  // reconnecting.
  await TestRenderer.act(async () => {
    root.update(React.createElement(View, { onChange: (e) => second.push(e.id) }));
  });
  const b = await stack.publish('hook1', 'phase.changed', { n: 2 });
  await eventually('lastChange b', () => rendered.lastChange && rendered.lastChange.id === b.id);
  assert.deepEqual(first, [a.id]);
  assert.deepEqual(second, [b.id]);

  await TestRenderer.act(async () => root.unmount());
  const c = await stack.publish('hook1', 'vote.updated', { n: 3 });
  // A fresh client proves c was delivered; the unmounted hook stays silent.
  let probe = null;
  function Probe() {
    probe = useLiveUpdates('hook1', { url: stack.url });
    return null;
  }
  let proot;
  await TestRenderer.act(async () => {
    proot = TestRenderer.create(React.createElement(Probe));
  });
  await eventually('probe polling', () => probe.status === 'polling');
  const d = await stack.publish('hook1', 'vote.updated', { n: 4 });
  await eventually('probe sees d', () => probe.lastChange && probe.lastChange.id === d.id);
  await TestRenderer.act(async () => proot.unmount());
  assert.deepEqual(second, [b.id], `nothing after unmount (c=${c.id})`);
});
