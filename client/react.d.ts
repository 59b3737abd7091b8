import type { ConnectOptions, Envelope, Status } from './client.js';

export type { ConnectOptions, Envelope, Status } from './client.js';

/** Listens to one eventId while mounted; reconnects when eventId, url, token or Pusher change.
 * options.url defaults to location.origin in a browser. */
export function useLiveUpdates(
  eventId: string | null | undefined,
  options?: Partial<ConnectOptions>,
): { status: Status; lastChange: Envelope | null };
