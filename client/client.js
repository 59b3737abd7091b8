// liveupdates browser client: one ES module, no dependencies, no build step.
//
// It listens through pusher-js when the poller's /v1/config says Pusher is
// configured and the page passed the Pusher constructor, and falls back to
// long-poll (or Server-Sent Events where EventSource exists) from the same
// cursor when Pusher is unavailable. A long-poll answer that says
// "Live-Transport: sse" (the poller's hint on a hot event) moves the
// fallback to the SSE stream from the same cursor: EventSource where it
// exists, else a small fetch-based reader (Node 20); if the stream fails,
// long-poll takes over again. Long-polls say transport=sse when the client
// can take the stream, so the poller moves it before the next change. Every change, whatever path it came
// by, goes through one apply() that orders by seq, drops ids already seen
// and calls onChange once per change id.
//
// The same module runs in a browser and in Node 20: what differs (document,
// EventSource, window events) is feature-checked, never sniffed.

/**
 * @typedef {'connecting' | 'live' | 'polling' | 'offline'} Status
 *
 * @typedef {object} Envelope
 * @property {string} id        change id; onChange sees each id once
 * @property {number} seq       JetStream stream seq: the order and the cursor
 * @property {string} eventId
 * @property {string} type      e.g. "vote.updated"
 * @property {string} at        RFC 3339 time the change was stored
 * @property {unknown} [data]   the publisher's JSON (decoded when it came gzip+base64 or by reference)
 * @property {number} [coalesced] N changes of this type were folded into this newest one
 * @property {boolean} [ref]    still true only when the referenced change could not be fetched
 *
 * @typedef {object} ConnectOptions
 * @property {string} url       the poller's base URL, e.g. "https://poller.example"
 * @property {string} eventId
 * @property {string} [token]   poll token, when the poller has LIVE_POLL_SECRET
 * @property {any} [Pusher]     the pusher-js constructor; leave it out to poll only
 * @property {(envelope: Envelope) => void} [onChange] once per change id, in seq order
 * @property {() => void} [onReset] the cursor is too old: refetch everything
 * @property {(status: Status) => void} [onStatus]
 * @property {typeof fetch} [fetch] the fetch to use (default globalThis.fetch)
 * @property {number} [fallbackAfter] ms Pusher may spend connecting before polling starts (default 4000)
 * @property {boolean} [sse] use Server-Sent Events for the fallback: EventSource where it exists, and the
 *   stream the poller asks a hot event's long-pollers to move to (default true; false: long-poll only)
 * @property {object} [pusherOptions] merged over the options built from /v1/config
 * @property {number} [repollSpread] ms: the most a long-poll waits, at random, before asking again after an
 *   answer that carried changes (default: /v1/config's repollSpreadMs, else 250; at most 2000)
 *
 * @typedef {object} LiveUpdates
 * @property {() => Status} getStatus
 * @property {() => void} reconnect  drop every connection and start again from the cursor
 * @property {() => void} close      stop for good; clears every timer
 */

// The six documented change types. EventSource has no wildcard listener
// (the poller names each SSE event after the change type, so onmessage never
// fires); types beyond these come from /v1/config "types".
const KNOWN_TYPES = ['vote.updated', 'blocks.updated', 'phase.changed', 'final.date.set', 'attendee.updated', 'availability.updated'];

const SEEN_IDS_MAX = 2048; // above a poller ring's worth of changes, so a catch-up never re-reports one
const SAFETY_POLL_MS = 60_000; // Pusher keeps no history and may drop silently: check the poller now and then
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 30_000;
const DEFAULT_WAIT_S = 25; // long-poll wait; the poller clamps it to its own maximum
const DEFAULT_POLL_MS = 2000;
const REF_ATTEMPTS = 4;
// After a long-poll answer with changes the client waits a random part of
// the spread before it asks again. On a hot event every waiting browser is
// answered by the same change at about the same time; re-polling at once,
// they would all arrive in the same millisecond and queue behind each
// other (and in front of the publishers) on the poller. Spread out, the
// poller serves them as they come, and a change published meanwhile is
// answered at once when they do (it is older than the poller's linger).
// The poller's /v1/config says how much (its linger); the cap bounds what
// a change's delivery can gain from it.
const DEFAULT_REPOLL_SPREAD_MS = 250;
const MAX_REPOLL_SPREAD_MS = 2000;
// The long-poll answers' header by which the poller asks the client to move
// to another transport (/v1/config "transportHeader"), and the stream's
// reconnection delay until the stream's own retry: field says otherwise.
const DEFAULT_TRANSPORT_HEADER = 'Live-Transport';
const DEFAULT_STREAM_RETRY_MS = 2000;

/**
 * repollDelay is how long a long-poll waits before asking again after an
 * answer that carried changes: uniform in [0, spread), spread capped to
 * [0, 2000] ms.
 * @param {number} spreadMs
 * @param {() => number} [random] in [0, 1), default Math.random
 * @returns {number} ms
 */
export function repollDelay(spreadMs, random = Math.random) {
  const spread = Number.isFinite(spreadMs) ? Math.min(Math.max(spreadMs, 0), MAX_REPOLL_SPREAD_MS) : DEFAULT_REPOLL_SPREAD_MS;
  return spread * Math.min(Math.max(random(), 0), 1);
}

class HTTPError extends Error {
  constructor(status, retryAfter, body) {
    super(`liveupdates: HTTP ${status}${body && body.error ? `: ${body.error.code}: ${body.error.message}` : ''}`);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

/**
 * connect starts listening to one eventId's changes.
 * @param {ConnectOptions} options
 * @returns {LiveUpdates}
 */
export function connect(options) {
  if (!options || typeof options.url !== 'string' || typeof options.eventId !== 'string') {
    throw new TypeError('liveupdates connect: url and eventId are required');
  }
  const base = options.url.replace(/\/+$/, '');
  const eventId = options.eventId;
  const doFetch = options.fetch || globalThis.fetch.bind(globalThis);
  const onChange = options.onChange || (() => {});
  const onReset = options.onReset || (() => {});
  const onStatus = options.onStatus || (() => {});
  const fallbackAfter = options.fallbackAfter ?? 4000;
  const hasDocument = typeof document !== 'undefined' && typeof document.addEventListener === 'function';
  const canSSE = options.sse !== false && typeof EventSource === 'function';

  // The state that matters: the cursor (every change of eventId with seq <=
  // cursor has been applied or was before our start) and the ids seen.
  /** @type {number | null} */
  let cursor = null;
  const seen = new Set();
  let etag = '';

  /** @type {Status} */
  let status = 'connecting';
  let closed = false;
  let cfg = null;

  // A generation per start(): every loop and callback of an older
  // generation stops at its next step, so reconnect() cannot leave a loop
  // from before it running.
  let gen = 0;
  let abort = new AbortController();
  const timers = new Set();

  // Pusher side.
  let pusher = null;
  let channel = null;
  let pusherLive = false; // subscribed and caught up
  let holding = false; // a catch-up is running: live changes wait in held
  let held = [];
  let fallbackTimer = null;
  let catchUps = 0;

  // Fallback side. polling says the fallback is wanted; pollAbort is the
  // running loop (absent while the page is hidden), aborted to stop it.
  let polling = false;
  /** @type {AbortController | null} */
  let pollAbort = null;
  let es = null;
  let failures = 0;
  // The stream the poller hinted at is not tried again before this time
  // (ms since the epoch): after it failed, long-poll carries on for a while
  // rather than flap between the two.
  let streamHoldUntil = 0;
  // False once a fetch answer turned out to have no readable body: the
  // fetch-based stream cannot work in this runtime.
  let fetchStreams = options.sse !== false;

  // Changes are applied one after another, in arrival order, even when
  // decoding one is asynchronous (gzip, ref), so seq order holds.
  let chain = Promise.resolve();

  /** transition is the one place the status changes. */
  function transition(next) {
    if (closed || next === status) return;
    status = next;
    try {
      onStatus(next);
    } catch (err) {
      report(err);
    }
  }

  function report(err) {
    // The callbacks are the page's; a throw there must not stop the client
    // (nor, in Node, the process).
    if (typeof reportError === 'function') reportError(err);
    else console.error('liveupdates:', err);
  }

  function later(ms, fn) {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
    return t;
  }

  function clearTimer(t) {
    if (t) {
      clearTimeout(t);
      timers.delete(t);
    }
  }

  function sleep(ms, signal) {
    return new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const onAbort = () => {
        clearTimer(t);
        resolve();
      };
      const t = later(ms, () => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      });
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  function backoff(retryAfterS) {
    // Full jitter over an exponential ceiling; Retry-After is a floor.
    const ceil = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.min(failures, 10));
    const jitter = Math.random() * ceil;
    const floor = retryAfterS > 0 ? retryAfterS * 1000 : 0;
    return Math.max(floor + Math.random() * 1000 * (floor > 0 ? 1 : 0), jitter);
  }

  function hidden() {
    return hasDocument && document.visibilityState === 'hidden';
  }

  // ---- HTTP ----

  // endpoint builds a poller URL: from /v1/config's template when it gave
  // one ({eventId}, {seq}), else the documented path.
  function endpoint(kind, extra, seq) {
    const tmpl = cfg && cfg.urls[kind];
    const path = kind === 'messages' ? `messages/${seq}` : kind;
    let u = tmpl
      ? tmpl.replace('{eventId}', encodeURIComponent(eventId)).replace('{seq}', String(seq))
      : `${base}/v1/events/${encodeURIComponent(eventId)}/${path}`;
    u = absolute(u);
    const q = [];
    for (const [k, v] of Object.entries(extra || {})) if (v !== undefined && v !== null && v !== '') q.push(`${k}=${encodeURIComponent(v)}`);
    // The token goes in the query: an Authorization header would make every
    // cross-origin poll pay a CORS preflight, and EventSource cannot send one.
    if (options.token) q.push(`token=${encodeURIComponent(options.token)}`);
    return q.length ? u + (u.includes('?') ? '&' : '?') + q.join('&') : u;
  }

  async function getJSON(u, signal, headers) {
    /** @type {RequestInit} */
    const init = { signal, headers: headers || {} };
    // A browser's HTTP cache would turn the poller's 304 into a cached 200
    // and hide it; we send If-None-Match ourselves and want the 304 as is.
    if (hasDocument) init.cache = 'no-store';
    const res = await doFetch(u, init);
    if (res.status === 304) return { status: 304, headers: res.headers, body: null };
    let body = null;
    const text = await res.text();
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      body = null;
    }
    if (!res.ok) {
      const ra = Number(res.headers.get('Retry-After'));
      throw new HTTPError(res.status, Number.isFinite(ra) ? ra : 0, body);
    }
    return { status: res.status, headers: res.headers, body };
  }

  async function loadConfig(signal) {
    try {
      const r = await getJSON(`${base}/v1/config`, signal);
      return normalizeConfig(r.body || {}, base, eventId);
    } catch (err) {
      // A poller older than /v1/config: poll with the documented paths.
      if (err instanceof HTTPError && err.status === 404) return normalizeConfig({}, base, eventId);
      throw err;
    }
  }

  /**
   * poll asks /updates once. wait is seconds (0: answer at once). It applies
   * what comes back. got: something (or a reset) came, so the caller asks
   * again at once; more: the answer was one page of several; changed: it
   * carried changes after the cursor (not the baseline, not a reset); hint:
   * the poller asks this long-poller to move to the SSE stream.
   * @returns {Promise<{got: boolean, more: boolean, changed?: boolean, hint?: boolean}>}
   */
  async function poll(signal, wait) {
    const headers = {};
    if (etag && cursor !== null) headers['If-None-Match'] = etag;
    // transport=sse: this client can take the stream, so on a hot event the
    // poller moves it at once instead of with the next change's answer.
    const transport = wait > 0 && canStream() ? 'sse' : '';
    const r = await getJSON(endpoint('updates', { since: cursor === null ? '' : String(cursor), wait: wait || '', transport }), signal, headers);
    failures = 0;
    const hint = wait > 0 && (r.headers.get(cfg.transportHeader) || '').trim().toLowerCase() === 'sse';
    if (r.status === 304) return { got: false, more: false, hint };
    const tag = r.headers.get('ETag');
    const body = r.body || {};
    if (body.reset) {
      etag = '';
      await enqueue(() => {
        cursor = Number(body.cursor);
        call(onReset);
      });
      return { got: true, more: false };
    }
    // A page of a deep resume (a cursor below what the poller holds in
    // memory, answered from the stream) comes without an ETag: there is
    // more after its cursor, and an older ETag must not make the next
    // page a 304.
    etag = tag || '';
    const events = Array.isArray(body.events) ? body.events : [];
    const more = events.length > 0 && !tag;
    if (cursor === null) {
      // The first answer is a baseline: the changes before connect() are
      // the page's initial data, not news. Remember their ids and start
      // from the poller's cursor.
      for (const e of events) remember(e.id);
      await enqueue(() => {
        cursor = Math.max(cursor ?? 0, Number(body.cursor) || 0);
      });
      return { got: true, more }; // poll again at once, now with a cursor to wait on
    }
    applyAll(events);
    await enqueue(() => {
      const c = Number(body.cursor);
      if (Number.isFinite(c) && c > (cursor ?? 0)) cursor = c;
    });
    return { got: events.length > 0, more, changed: events.length > 0, hint: hint && !more };
  }

  /** catchUp polls without waiting until nothing more is pending. */
  async function catchUp(signal) {
    while (!signal.aborted && !closed) {
      if (!(await poll(signal, 0)).more) return;
    }
  }

  // ---- apply: the one path every change takes ----

  function remember(id) {
    if (seen.has(id)) return;
    seen.add(id);
    if (seen.size > SEEN_IDS_MAX) seen.delete(seen.values().next().value);
  }

  function call(fn, arg) {
    try {
      fn(arg);
    } catch (err) {
      report(err);
    }
  }

  function enqueue(fn) {
    chain = chain.then(fn, fn);
    return chain;
  }

  function applyAll(envelopes) {
    const sorted = envelopes.filter((e) => e && typeof e === 'object').sort((a, b) => a.seq - b.seq);
    for (const e of sorted) apply(e);
  }

  /**
   * apply delivers one envelope: in seq order (anything at or below the
   * cursor is already applied or predates us), once per id, decoded.
   * @param {Envelope} envelope
   */
  function apply(envelope) {
    const g = gen;
    return enqueue(async () => {
      if (closed || g !== gen) return;
      if (typeof envelope.seq !== 'number' || typeof envelope.id !== 'string') return;
      if (envelope.eventId !== undefined && envelope.eventId !== eventId) return;
      if (seen.has(envelope.id)) return;
      if (cursor !== null && envelope.seq <= cursor) return;
      let env = envelope;
      try {
        env = await decode(envelope);
      } catch (err) {
        report(err);
      }
      if (closed || g !== gen) return;
      if (seen.has(env.id) || (cursor !== null && env.seq <= cursor)) return;
      remember(env.id);
      cursor = env.seq;
      call(onChange, env);
    });
  }

  async function decode(env) {
    // Without DecompressionStream (an old browser) the poller has the same
    // change uncompressed.
    if (env.enc === 'gzip+base64' && typeof env.data === 'string' && typeof DecompressionStream === 'function') {
      const out = { ...env };
      out.data = JSON.parse(await gunzipBase64(env.data));
      delete out.enc;
      return out;
    }
    if ((env.ref === true && env.data === undefined) || env.enc === 'gzip+base64') {
      for (let attempt = 0; attempt < REF_ATTEMPTS && !closed; attempt++) {
        try {
          const r = await getJSON(endpoint('messages', null, env.seq), abort.signal);
          if (r.body && r.body.id === env.id) return r.body;
          break;
        } catch (err) {
          // 404: the change is gone from the stream; hand it over as the
          // reference it is, the page refetches anyway.
          if (err instanceof HTTPError && err.status === 404) break;
          if (abort.signal.aborted) break;
          await sleep(backoff(err.retryAfter || 0), abort.signal);
        }
      }
    }
    return env;
  }

  // ---- Pusher ----

  function startPusher(g) {
    const p = cfg.pusher;
    const popts = {
      cluster: p.cluster || 'local', // pusher-js 8 requires one even with wsHost
      forceTLS: p.tls,
    };
    if (p.host) {
      popts.wsHost = p.host;
      if (p.port) {
        popts.wsPort = p.port;
        popts.wssPort = p.port;
      }
      if (p.path) popts.wsPath = p.path;
      // Self-hosted: one transport, the scheme /v1/config names; never a
      // fallback to sockjs on pusher.com, nor TLS to a plain port.
      popts.enabledTransports = [p.tls ? 'wss' : 'ws'];
    }
    if (p.private) {
      popts.channelAuthorization = {
        endpoint: absolute(p.authEndpoint || '/v1/pusher/auth'),
        transport: 'ajax',
        params: options.token ? { token: options.token, event_id: eventId } : { event_id: eventId },
        headers: options.token ? { Authorization: `Bearer ${options.token}` } : {},
      };
    }
    // The page's own settings win over what /v1/config says.
    Object.assign(popts, options.pusherOptions);
    try {
      pusher = new options.Pusher(p.key, popts);
    } catch (err) {
      report(err);
      pusher = null;
      startPolling();
      return;
    }
    const conn = pusher.connection;
    conn.bind('state_change', (s) => {
      if (g !== gen) return;
      onPusherState(s.current);
    });
    channel = pusher.subscribe(p.channel);
    channel.bind('pusher:subscription_succeeded', () => {
      if (g !== gen) return;
      catchUpLive(g);
    });
    channel.bind('pusher:subscription_error', () => {
      // An auth refusal will not pass by itself: poll (the poller answers
      // the same token, or says why it does not).
      if (g !== gen) return;
      pusherLive = false;
      startPolling();
    });
    channel.bind_global((name, data) => {
      if (g !== gen || name.startsWith('pusher:') || name.startsWith('pusher_internal:')) return;
      const env = typeof data === 'string' ? safeParse(data) : data;
      if (!env) return;
      if (holding) held.push(env);
      else apply(env);
    });
    armFallback(g);
  }

  function onPusherState(state) {
    if (state === 'connected') return; // subscription_succeeded follows
    pusherLive = false;
    holding = false;
    held = [];
    if (state === 'connecting' || state === 'initialized') {
      if (status === 'live') transition('connecting');
      armFallback(gen);
      return;
    }
    // unavailable, failed, disconnected: pusher-js will be a while, poll now.
    startPolling();
  }

  function armFallback(g) {
    if (fallbackTimer || polling) return;
    fallbackTimer = later(fallbackAfter, () => {
      fallbackTimer = null;
      if (g !== gen || pusherLive) return;
      startPolling();
    });
  }

  /**
   * catchUpLive runs on every subscription_succeeded: it holds live
   * changes, asks the poller for everything after the cursor, applies that,
   * then the held changes (apply drops what the catch-up already brought),
   * and only then reports live.
   */
  async function catchUpLive(g) {
    clearTimer(fallbackTimer);
    fallbackTimer = null;
    // Only the newest catch-up may end the holding: an older one finishing
    // first would let live changes overtake what the newer one fetches.
    const mine = ++catchUps;
    holding = true;
    held = [];
    const signal = abort.signal;
    for (;;) {
      if (g !== gen || closed || signal.aborted || mine !== catchUps) return;
      try {
        await catchUp(signal);
        break;
      } catch (err) {
        if (signal.aborted || g !== gen) return;
        await failed(err, signal);
      }
    }
    if (mine !== catchUps) return;
    if (g !== gen || !channel || !channel.subscribed) {
      holding = false;
      return;
    }
    stopPolling();
    const h = held;
    held = [];
    holding = false;
    applyAll(h);
    await enqueue(() => {});
    if (g !== gen || mine !== catchUps || !channel.subscribed) return;
    pusherLive = true;
    transition('live');
  }

  // ---- fallback: long-poll or SSE ----

  function startPolling() {
    if (polling || closed) return;
    clearTimer(fallbackTimer);
    fallbackTimer = null;
    polling = true;
    // The fallback is running from now; a long-poll's first answer may
    // take its whole wait. A failing network says offline instead.
    transition('polling');
    resumePolling();
  }

  function resumePolling() {
    if (!polling || pollAbort || closed || hidden()) return; // visibilitychange resumes it
    const pa = new AbortController();
    pollAbort = pa;
    if (canSSE && cfg.urls.stream !== null) runSSE(pa.signal);
    else runLongPoll(pa.signal);
  }

  function pausePolling() {
    if (pollAbort) pollAbort.abort();
    pollAbort = null;
    if (es) {
      es.close();
      es = null;
    }
  }

  function stopPolling() {
    polling = false;
    pausePolling();
  }

  async function runLongPoll(signal) {
    while (!signal.aborted && !closed) {
      const started = Date.now();
      try {
        const { got, more, changed, hint } = await poll(signal, cursor === null ? 0 : cfg.wait);
        if (signal.aborted) return;
        transition('polling');
        // Spread the re-polls of a hot event (see repollDelay); the next
        // page of a deep resume is fetched at once.
        if (changed && !more) {
          const d = repollDelay(options.repollSpread ?? cfg.repollSpread);
          if (d > 0) await sleep(d, signal);
          if (signal.aborted) return;
        }
        // A hot event: the poller asks its long-pollers to take the stream,
        // which costs it one write per change instead of an answer and a
        // new request. The cursor is current: the stream resumes from it.
        // (After the spread above, so a crowd answered at once does not
        // open its streams in the same millisecond either.)
        if (hint && canStream()) {
          if (canSSE) runSSE(signal);
          else runFetchSSE(signal);
          return;
        }
        // A poller that answers at once (wait not honoured, or a proxy
        // cutting long requests) is not hammered: keep the poll interval.
        if (!got && Date.now() - started < cfg.pollInterval / 2) await sleep(cfg.pollInterval, signal);
      } catch (err) {
        if (signal.aborted) return;
        await failed(err, signal);
      }
    }
  }

  async function failed(err, signal) {
    failures++;
    // 429 and 503 are the poller asking for patience: the status stays.
    // A rejected fetch (the network) or a refusal (a bad or expired token)
    // means no change arrives until something changes: offline.
    if (!(err instanceof HTTPError) || (err.status !== 429 && err.status !== 503)) transition('offline');
    await sleep(backoff(err.retryAfter || 0), signal);
  }

  async function runSSE(signal) {
    // The stream resumes from a cursor; take the baseline first.
    while (cursor === null) {
      if (signal.aborted || closed) return;
      try {
        await poll(signal, 0);
      } catch (err) {
        if (signal.aborted) return;
        await failed(err, signal);
      }
    }
    if (signal.aborted || closed) return;
    const src = new EventSource(endpoint('stream', { since: String(cursor) }));
    es = src;
    const onEnvelope = (ev) => {
      if (signal.aborted) return;
      const env = safeParse(ev.data);
      if (env) apply(env);
    };
    for (const t of new Set([...KNOWN_TYPES, ...cfg.types])) src.addEventListener(t, onEnvelope);
    src.addEventListener('message', onEnvelope);
    src.addEventListener('reset', (ev) => {
      if (signal.aborted) return;
      const r = safeParse(ev.data);
      enqueue(() => {
        if (r && r.cursor !== undefined) cursor = Number(r.cursor);
        etag = '';
        call(onReset);
      });
    });
    src.onopen = () => {
      if (signal.aborted) return;
      failures = 0;
      transition('polling');
    };
    src.onerror = () => {
      if (signal.aborted) return;
      if (src.readyState === 2 /* CLOSED: an error status; the browser gives up */) {
        src.close();
        if (es === src) es = null;
        // Long-poll instead: it reads Retry-After and backs off. A hint to
        // take the stream again waits as long again.
        failures++;
        const d = backoff(0);
        streamHoldUntil = Date.now() + d;
        sleep(d, signal).then(() => runLongPoll(signal));
      } else if (typeof navigator !== 'undefined' && navigator.onLine === false) {
        transition('offline');
      }
      // Otherwise the browser reconnects by itself with Last-Event-ID.
    };
  }

  function canStream() {
    return (canSSE || fetchStreams) && cfg.urls.stream !== null && Date.now() >= streamHoldUntil;
  }

  /**
   * runFetchSSE reads the SSE stream through fetch where there is no
   * EventSource (Node 20): from the cursor, each change through apply, a
   * reset as the EventSource path handles it. When the stream fails or
   * ends, long-poll takes over from the cursor at once (it is the
   * reconnection: a long-poll answer still hinting at the stream brings the
   * client back to it, no sooner than the stream's retry: delay, or a
   * backoff after a refusal).
   */
  async function runFetchSSE(signal) {
    let retryMs = DEFAULT_STREAM_RETRY_MS;
    let opened = false;
    let retryAfter = 0;
    try {
      await enqueue(() => {}); // the cursor after every change already received
      /** @type {RequestInit} */
      const init = { signal, headers: { Accept: 'text/event-stream' } };
      if (hasDocument) init.cache = 'no-store';
      const res = await doFetch(endpoint('stream', { since: String(cursor) }), init);
      if (!res.ok || !res.body || typeof res.body.getReader !== 'function') {
        if (res.ok) fetchStreams = false; // no readable body here: long-poll for good
        const ra = Number(res.headers.get('Retry-After'));
        retryAfter = Number.isFinite(ra) ? ra : 0;
        try {
          await res.body?.cancel();
        } catch {
          // nothing to release
        }
        throw new HTTPError(res.status, retryAfter, null);
      }
      opened = true;
      failures = 0;
      transition('polling');
      const feed = sseParser(
        (type, data) => {
          if (signal.aborted) return;
          if (type === 'reset') {
            const r = safeParse(data);
            enqueue(() => {
              if (r && r.cursor !== undefined) cursor = Number(r.cursor);
              etag = '';
              call(onReset);
            });
            return;
          }
          const env = safeParse(data);
          if (env) apply(env);
        },
        (ms) => {
          retryMs = ms;
        },
      );
      const reader = res.body.getReader();
      const dec = new TextDecoder();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        feed(dec.decode(value, { stream: true }));
      }
    } catch (err) {
      if (signal.aborted || closed) return;
      if (!opened && !(err instanceof HTTPError)) report(err);
    }
    if (signal.aborted || closed) return;
    if (!opened) failures++;
    streamHoldUntil = Date.now() + (opened ? retryMs : backoff(retryAfter));
    await enqueue(() => {}); // long-poll from the last change the stream brought
    if (!signal.aborted && !closed) runLongPoll(signal);
  }

  // ---- lifecycle ----

  async function start() {
    const g = ++gen;
    abort = new AbortController();
    const signal = abort.signal;
    transition('connecting');
    while (!cfg) {
      try {
        cfg = await loadConfig(signal);
        failures = 0;
      } catch (err) {
        if (signal.aborted || g !== gen) return;
        await failed(err, signal);
        if (g !== gen || closed) return;
      }
    }
    if (g !== gen || closed) return;
    if (cfg.pusher && typeof options.Pusher === 'function') startPusher(g);
    else startPolling();
    safetyPoll(g);
  }

  function safetyPoll(g) {
    later(SAFETY_POLL_MS, async () => {
      if (g !== gen || closed) return;
      if (pusherLive && !holding && !hidden()) {
        try {
          await catchUp(abort.signal);
        } catch {
          // the next safety poll or Pusher's own state says more
        }
      }
      safetyPoll(g);
    });
  }

  function teardown() {
    gen++;
    abort.abort();
    for (const t of timers) clearTimeout(t);
    timers.clear();
    fallbackTimer = null;
    stopPolling();
    pusherLive = false;
    holding = false;
    held = [];
    if (pusher) {
      try {
        pusher.disconnect();
      } catch (err) {
        report(err);
      }
    }
    pusher = null;
    channel = null;
  }

  // The page comes back (visible, or the network returns): catch up at once
  // instead of waiting for the next poll or safety poll.
  function wake() {
    if (closed || !cfg) return;
    if (pusher && pusher.connection.state !== 'connected' && pusher.connection.state !== 'connecting') pusher.connect();
    if (polling) {
      // Restart the loop from the cursor now rather than after its backoff.
      pausePolling();
      resumePolling();
    } else if (pusherLive) {
      catchUp(abort.signal).catch(() => {});
    }
  }

  function onVisibility() {
    // Hidden: no polling (Pusher stays, it costs nothing); polling stays
    // wanted, so wake() resumes it from the cursor.
    if (document.visibilityState === 'visible') wake();
    else pausePolling();
  }
  function onOnline() {
    wake();
  }
  function onOffline() {
    transition('offline');
  }
  if (hasDocument) document.addEventListener('visibilitychange', onVisibility);
  const win = typeof window !== 'undefined' && typeof window.addEventListener === 'function' ? window : null;
  if (win) {
    win.addEventListener('online', onOnline);
    win.addEventListener('offline', onOffline);
  }

  function absolute(u) {
    return /^[a-z]+:/i.test(u) ? u : base + (u.startsWith('/') ? '' : '/') + u;
  }

  start();

  return {
    getStatus: () => status,
    reconnect() {
      if (closed) return;
      teardown();
      start();
    },
    close() {
      if (closed) return;
      teardown();
      if (hasDocument) document.removeEventListener('visibilitychange', onVisibility);
      if (win) {
        win.removeEventListener('online', onOnline);
        win.removeEventListener('offline', onOffline);
      }
      transition('offline');
      closed = true;
    },
  };
}

/**
 * sseParser reads a text/event-stream as the SSE spec does: lines end at
 * CRLF, CR or LF; "data:" lines join with "\n"; a blank line dispatches
 * the event (none when it had no data); ":" lines are comments. It returns
 * feed, to call with each decoded chunk of the stream in order.
 * @param {(type: string, data: string, id: string) => void} onEvent type is "message" when the event named none
 * @param {(ms: number) => void} [onRetry] the stream's reconnection delay (a retry: field)
 * @returns {(chunk: string) => void}
 */
export function sseParser(onEvent, onRetry) {
  let buf = '';
  let skipLF = false; // the last chunk ended in CR: a LF first in the next one belongs to it
  let data = '';
  let hasData = false;
  let type = '';
  let lastId = '';
  function line(l) {
    if (l === '') {
      if (hasData) onEvent(type || 'message', data, lastId);
      data = '';
      hasData = false;
      type = '';
      return;
    }
    if (l[0] === ':') return;
    const i = l.indexOf(':');
    const field = i < 0 ? l : l.slice(0, i);
    let value = i < 0 ? '' : l.slice(i + 1);
    if (value[0] === ' ') value = value.slice(1);
    if (field === 'data') {
      data = hasData ? `${data}\n${value}` : value;
      hasData = true;
    } else if (field === 'event') {
      type = value;
    } else if (field === 'id') {
      if (!value.includes('\0')) lastId = value;
    } else if (field === 'retry') {
      if (/^\d+$/.test(value) && onRetry) onRetry(Number(value));
    }
  }
  return (chunk) => {
    let s = chunk;
    if (skipLF && s.length > 0) {
      if (s[0] === '\n') s = s.slice(1);
      skipLF = false;
    }
    buf += s;
    let start = 0;
    for (let i = 0; i < buf.length; i++) {
      const c = buf.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      line(buf.slice(start, i));
      if (c === 13) {
        if (i + 1 < buf.length) {
          if (buf.charCodeAt(i + 1) === 10) i++;
        } else {
          skipLF = true;
        }
      }
      start = i + 1;
    }
    buf = buf.slice(start);
  };
}

function safeParse(s) {
  try {
    return JSON.parse(s);
  } catch {
    return null;
  }
}

/**
 * gunzipBase64 decodes the relay's "gzip+base64" data to its JSON text.
 * @param {string} b64
 * @returns {Promise<string>}
 */
export async function gunzipBase64(b64) {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'));
  return new Response(stream).text();
}

/**
 * normalizeConfig reads /v1/config into what the client uses. It is lenient
 * about names so a poller and a client of neighbouring versions agree.
 */
function normalizeConfig(c, base, eventId) {
  const pick = (...vals) => vals.find((v) => v !== undefined && v !== null);
  const ms = (v, d) => {
    if (typeof v === 'number') return v;
    if (typeof v === 'string') {
      const m = /^(\d+(?:\.\d+)?)(ms|s)?$/.exec(v);
      if (m) return Number(m[1]) * (m[2] === 'ms' ? 1 : 1000);
    }
    return d;
  };
  const p = c.pusher || null;
  let pusher = null;
  if (p && p.key) {
    const isPrivate = Boolean(pick(p.private, p.privateChannels, c.private, c.privateChannels, false));
    const prefix = pick(p.channelPrefix, c.channelPrefix, 'event-');
    let channel = pick(p.channel, c.channel);
    if (channel) channel = channel.replace('{eventId}', eventId);
    else channel = (isPrivate ? 'private-' : '') + prefix + eventId;
    pusher = {
      key: p.key,
      cluster: pick(p.cluster, ''),
      host: pick(p.host, p.wsHost, ''),
      port: Number(pick(p.port, p.wsPort, 0)) || 0,
      path: pick(p.path, p.wsPath, ''),
      tls: Boolean(pick(p.tls, p.forceTLS, p.useTLS, !pick(p.host, p.wsHost))),
      private: isPrivate,
      channel,
      authEndpoint: pick(p.authEndpoint, c.authEndpoint, '/v1/pusher/auth'),
    };
  }
  const urls = c.urls || {};
  return {
    pusher,
    urls: {
      updates: pick(urls.updates, urls.poll, c.pollUrl, c.updatesUrl, null),
      // false means the poller serves no SSE: long-poll even in a browser.
      stream: pick(urls.stream, urls.sse, c.streamUrl, c.sseUrl, c.sse, null) === false ? null : pick(urls.stream, urls.sse, c.streamUrl, c.sseUrl, ''),
      messages: pick(urls.messages, c.messagesUrl, null),
    },
    pollInterval: ms(pick(c.pollIntervalMs, c.pollInterval), DEFAULT_POLL_MS),
    wait: Math.max(1, Math.round(ms(pick(c.longPollWaitSeconds, c.longPollWait, c.wait), DEFAULT_WAIT_S * 1000) / 1000)),
    repollSpread: ms(pick(c.repollSpreadMs, c.repollSpread), DEFAULT_REPOLL_SPREAD_MS),
    transportHeader: typeof c.transportHeader === 'string' && c.transportHeader ? c.transportHeader : DEFAULT_TRANSPORT_HEADER,
    types: Array.isArray(c.types) ? c.types : [],
  };
}
