// The real server stack for the client's tests: the liveupdates binary
// running `dev` (embedded JetStream, ingest API, poller, relay, and the
// Pusher-compatible WebSocket server) on free ports and a temp data dir,
// plus a WebSocket-aware TCP proxy in front of the WebSocket side so a test
// can close it with a code, refuse it, or stop it while the rest runs.

import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, '..', '..');

/** eventually polls cond until it returns truthy or the deadline passes. */
export async function eventually(what, cond, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await cond();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last: ${last instanceof Error ? last.stack : JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

let built = null;

/**
 * binary returns the liveupdates binary: $LIVEUPDATES_BIN (make test builds
 * it once for every test file), else a fresh `go build` into a temp dir.
 */
export function binary() {
  if (process.env.LIVEUPDATES_BIN) return process.env.LIVEUPDATES_BIN;
  if (built) return built;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'liveupdates-bin-'));
  const out = path.join(dir, 'liveupdates');
  execFileSync('go', ['build', '-o', out, './cmd/liveupdates'], { cwd: repoRoot, stdio: 'inherit' });
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  built = out;
  return out;
}

/**
 * startDev runs `liveupdates dev` and resolves once /readyz answers 200 and
 * /v1/config is served.
 * @param {{env?: Record<string,string>, httpPort?: number, pusherPort?: number}} [opts]
 */
export async function startDev(opts = {}) {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'liveupdates-data-'));
  const httpPort = opts.httpPort || (await freePort());
  const pusherPort = opts.pusherPort || (await freePort());
  const env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME || os.tmpdir(),
    LIVE_DATA_DIR: dataDir,
    LIVE_HTTP_ADDR: `127.0.0.1:${httpPort}`,
    LIVE_NATS_LISTEN: '127.0.0.1:0',
    LIVE_DEV_PUSHER_ADDR: `127.0.0.1:${pusherPort}`,
    LIVE_LOG_LEVEL: 'info',
    // Tests poll hard from one address; the limits are not what they test.
    LIVE_POLLER_RATE: '1000',
    LIVE_POLLER_BURST: '1000',
    LIVE_API_RATE: '100000',
    LIVE_API_BURST: '100000',
    // Every change is counted; coalescing would fold some over Pusher.
    LIVE_RELAY_COALESCE: 'off',
    ...opts.env,
  };
  const proc = spawn(binary(), ['dev'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const keep = (b) => {
    log += b.toString();
    if (log.length > 200_000) log = log.slice(-100_000);
  };
  proc.stdout.on('data', keep);
  proc.stderr.on('data', keep);
  let exited = null;
  const exitP = new Promise((resolve) => proc.on('exit', (code, sig) => {
    exited = { code, sig };
    resolve(exited);
  }));
  const url = `http://127.0.0.1:${httpPort}`;
  try {
    await eventually('liveupdates dev to be ready', async () => {
      if (exited) throw new Error(`dev exited ${JSON.stringify(exited)}:\n${log}`);
      const r = await fetch(`${url}/readyz`);
      return r.status === 200;
    }, 60_000);
  } catch (err) {
    proc.kill('SIGKILL');
    throw new Error(`${err.message}\n--- dev log ---\n${log}`);
  }
  const stack = {
    url,
    httpPort,
    pusherPort,
    get log() {
      return log;
    },
    /** publish stores one change through the ingest API and returns {id, seq}. */
    async publish(eventId, type, data, headers = {}) {
      const r = await fetch(`${url}/v1/events/${eventId}/${type}`, {
        method: 'POST',
        headers: { Authorization: 'Bearer dev', 'Content-Type': 'application/json', ...headers },
        body: JSON.stringify(data),
      });
      const body = await r.json();
      if (r.status !== 202) throw new Error(`publish ${eventId}/${type}: ${r.status} ${JSON.stringify(body)}`);
      return body;
    },
    async config() {
      const r = await fetch(`${url}/v1/config`);
      if (!r.ok) throw new Error(`GET /v1/config: ${r.status}`);
      return r.json();
    },
    async stop() {
      if (!exited) {
        proc.kill('SIGTERM');
        const t = setTimeout(() => proc.kill('SIGKILL'), 15_000);
        await exitP;
        clearTimeout(t);
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
  return stack;
}

/**
 * WsProxy forwards TCP to the WebSocket server and understands just enough
 * of the protocol (the upgrade, then server frames one by one) to inject a
 * close frame between two frames. Modes: 'open' forwards; 'refuse' answers
 * upgrades 503; stop() closes the listener so connections are refused.
 */
export class WsProxy {
  constructor(targetPort) {
    this.targetPort = targetPort;
    this.mode = 'open';
    this.conns = new Set();
    this.sockets = new Set(); // every accepted socket, refused ones too, so stop() never waits on one
    this.port = 0;
    this.server = null;
    this.accepted = 0;
  }

  async start(port = 0) {
    this.server = net.createServer((c) => this.#accept(c));
    await new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port || this.port, '127.0.0.1', resolve);
    });
    this.port = this.server.address().port;
    return this.port;
  }

  /** stop closes the listener and drops every connection abruptly. */
  async stop() {
    const s = this.server;
    this.server = null;
    for (const c of this.conns) c.destroy();
    this.conns.clear();
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    if (s) await new Promise((r) => s.close(r));
  }

  /** closeAll sends every client a WebSocket close frame with code. */
  closeAll(code = 4200) {
    for (const c of this.conns) c.closeWith(code);
  }

  #accept(client) {
    this.accepted++;
    this.sockets.add(client);
    client.on('close', () => this.sockets.delete(client));
    client.on('error', () => client.destroy());
    if (this.mode === 'refuse') {
      client.end('HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      return;
    }
    const upstream = net.connect(this.targetPort, '127.0.0.1');
    let buf = Buffer.alloc(0);
    let upgraded = false;
    let closing = false;
    const conn = {
      closeWith: (code) => {
        closing = true;
        const f = Buffer.from([0x88, 0x02, (code >> 8) & 0xff, code & 0xff]);
        client.end(f);
        upstream.destroy();
      },
      destroy: () => {
        client.destroy();
        upstream.destroy();
      },
    };
    this.conns.add(conn);
    const drop = () => {
      this.conns.delete(conn);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', drop);
    upstream.on('error', drop);
    client.on('close', drop);
    upstream.on('close', drop);
    client.on('data', (d) => upstream.write(d));
    // Server to client: pass the upgrade response, then whole frames only,
    // so an injected close frame never lands inside one.
    upstream.on('data', (d) => {
      if (closing) return;
      buf = Buffer.concat([buf, d]);
      if (!upgraded) {
        const i = buf.indexOf('\r\n\r\n');
        if (i < 0) return;
        client.write(buf.subarray(0, i + 4));
        buf = buf.subarray(i + 4);
        upgraded = true;
      }
      for (;;) {
        const n = frameLength(buf);
        if (n < 0 || buf.length < n) return;
        client.write(buf.subarray(0, n));
        buf = buf.subarray(n);
      }
    });
  }
}

// frameLength is the byte length of the unmasked frame at the start of b,
// or -1 when its header is not complete yet.
function frameLength(b) {
  if (b.length < 2) return -1;
  let len = b[1] & 0x7f;
  let hdr = 2;
  if (len === 126) {
    if (b.length < 4) return -1;
    len = b.readUInt16BE(2);
    hdr = 4;
  } else if (len === 127) {
    if (b.length < 10) return -1;
    len = Number(b.readBigUInt64BE(2));
    hdr = 10;
  }
  if (b[1] & 0x80) hdr += 4;
  return hdr + len;
}

/** recorder collects what a client reports. */
export function recorder() {
  const r = {
    changes: [],
    statuses: [],
    resets: 0,
    onChange: (e) => r.changes.push(e),
    onStatus: (s) => r.statuses.push(s),
    onReset: () => r.resets++,
    ids() {
      return r.changes.map((c) => c.id);
    },
  };
  return r;
}

export function exists(p) {
  return existsSync(p);
}
