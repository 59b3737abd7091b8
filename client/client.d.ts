// Types for client.js: the liveupdates browser and Node client.

/** 'live': Pusher connected, subscribed and caught up. 'polling': the
 * long-poll or SSE fallback is running. 'connecting': neither yet.
 * 'offline': the network failed, or close() was called. */
export type Status = 'connecting' | 'live' | 'polling' | 'offline';

/** One change, the same through Pusher and through the poller. */
export interface Envelope<D = unknown> {
  /** The change id: onChange sees each id once. */
  id: string;
  /** The JetStream stream seq: global, increasing, the poll cursor. */
  seq: number;
  eventId: string;
  /** e.g. "vote.updated". */
  type: string;
  /** RFC 3339 time the change was stored. */
  at: string;
  /** The publisher's JSON, already decoded when it came gzip+base64 or by reference. */
  data?: D;
  /** N changes of this type were folded into this, the newest. */
  coalesced?: number;
  /** Still true only when a referenced change could not be fetched (it left the stream): refetch. */
  ref?: boolean;
}

export interface ConnectOptions {
  /** The poller's base URL, e.g. "https://poller.example". */
  url: string;
  eventId: string;
  /** Poll token, when the poller has LIVE_POLL_SECRET. */
  token?: string;
  /** The pusher-js constructor; leave it out to poll only. */
  Pusher?: new (key: string, options: any) => any;
  /** Once per change id, in seq order. */
  onChange?: (envelope: Envelope) => void;
  /** The cursor is too old for the poller: refetch everything. */
  onReset?: () => void;
  onStatus?: (status: Status) => void;
  /** The fetch to use; default globalThis.fetch. */
  fetch?: typeof fetch;
  /** Milliseconds pusher-js may spend connecting before polling starts; default 4000. */
  fallbackAfter?: number;
  /**
   * Use Server-Sent Events for the fallback: EventSource where it exists, and the stream the poller asks a
   * hot event's long-pollers to move to (its answers' Live-Transport: sse), read through EventSource or,
   * without it (Node 20), through fetch; the status stays 'polling' and long-poll takes over if the stream
   * fails. Default true; false long-polls only.
   */
  sse?: boolean;
  /** Merged over the pusher-js options built from /v1/config (e.g. activityTimeout). */
  pusherOptions?: Record<string, unknown>;
  /**
   * The most a long-poll waits, in milliseconds and at random, before asking again after an answer that
   * carried changes, so the browsers of a hot event do not all re-poll at once; default /v1/config's
   * repollSpreadMs (the poller's linger), else 250; at most 2000; 0 re-polls at once.
   */
  repollSpread?: number;
}

export interface LiveUpdates {
  getStatus(): Status;
  /** Drop every connection and start again from the cursor. */
  reconnect(): void;
  /** Stop for good; clears every timer. */
  close(): void;
}

export function connect(options: ConnectOptions): LiveUpdates;

/** How long a long-poll waits before asking again after an answer with changes: uniform in [0, spreadMs), spreadMs capped to [0, 2000]. */
export function repollDelay(spreadMs: number, random?: () => number): number;

/**
 * Reads a text/event-stream as the SSE spec does (CRLF, CR or LF line ends; data: lines joined with "\n";
 * comments skipped); returns feed, to call with each decoded chunk in order. type is "message" when the
 * event named none; onRetry gets a retry: field's milliseconds.
 */
export function sseParser(
  onEvent: (type: string, data: string, id: string) => void,
  onRetry?: (ms: number) => void,
): (chunk: string) => void;

/** Decodes the relay's "gzip+base64" data to its JSON text. */
export function gunzipBase64(b64: string): Promise<string>;
