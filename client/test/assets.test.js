// The files the binary embeds are the ones the tests exercise.

import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

test('the vendored pusher.min.js is the pusher-js that package-lock.json pins', () => {
  const pkg = require('pusher-js/package.json');
  assert.equal(pkg.version, '8.6.0');
  const lock = JSON.parse(readFileSync(path.join(here, '..', 'package-lock.json'), 'utf8'));
  assert.equal(lock.packages['node_modules/pusher-js'].version, '8.6.0');
  const vendored = readFileSync(path.join(here, '..', 'vendor', 'pusher.min.js'));
  const npm = readFileSync(path.join(path.dirname(require.resolve('pusher-js/package.json')), 'dist', 'web', 'pusher.min.js'));
  assert.ok(vendored.equals(npm), 'vendor/pusher.min.js differs from node_modules/pusher-js/dist/web/pusher.min.js: copy it again');
});

test('the module loads in Node 20 with no document and no EventSource', async () => {
  assert.equal(typeof globalThis.document, 'undefined');
  assert.equal(typeof globalThis.EventSource, 'undefined');
  const m = await import('../client.js');
  assert.equal(typeof m.connect, 'function');
  assert.throws(() => m.connect({}), /url and eventId are required/);
});

test('gunzipBase64 decodes what Go gzip+base64 produces', async () => {
  const { gunzipBase64 } = await import('../client.js');
  // The same format: RFC 1952 gzip, then standard base64.
  const { gzipSync } = await import('node:zlib');
  const b64 = gzipSync(Buffer.from('{"a":1}')).toString('base64');
  assert.equal(await gunzipBase64(b64), '{"a":1}');
});
