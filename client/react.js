// useLiveUpdates: the liveupdates client as a React hook.
//
// It imports React as the bare specifier 'react' on purpose. A hook must run
// on the very React instance that renders the page, and only the page's own
// module graph knows which one that is: a bundler (Next.js, Vite, webpack)
// resolves 'react' to it, and a page without a bundler maps it with an
// import map (<script type="importmap">{"imports":{"react":"…"}}</script>).
// A factory taking React as an argument would spare the import map but make
// every bundler user pass React by hand for nothing; bundlers are where
// React pages live.
//
// The client is imported relatively: both files sit side by side in the
// package and under /v1/client/ on the poller.

import { useEffect, useRef, useState } from 'react';
import { connect } from './client.js';

/**
 * useLiveUpdates listens to one eventId while the component is mounted.
 * options.onChange is called once per change id in seq order (pass SWR's
 * mutate to refetch); the latest options are used without reconnecting.
 * It reconnects only when eventId, url, token or Pusher change.
 *
 * @param {string | null | undefined} eventId  nothing happens while it is empty
 * @param {Partial<import('./client.js').ConnectOptions>} [options]
 * @returns {{status: import('./client.js').Status, lastChange: import('./client.js').Envelope | null}}
 */
export function useLiveUpdates(eventId, options = {}) {
  const [status, setStatus] = useState('connecting');
  const [lastChange, setLastChange] = useState(null);
  const latest = useRef(options);
  latest.current = options;
  const url = options.url || (typeof location !== 'undefined' ? location.origin : '');
  const { token, Pusher } = options;

  useEffect(() => {
    if (!eventId || !url) return undefined;
    let active = true;
    const o = latest.current;
    const live = connect({
      ...o,
      url,
      eventId,
      onChange(envelope) {
        if (!active) return;
        setLastChange(envelope);
        if (latest.current.onChange) latest.current.onChange(envelope);
      },
      onReset() {
        if (active && latest.current.onReset) latest.current.onReset();
      },
      onStatus(s) {
        if (!active) return;
        setStatus(s);
        if (latest.current.onStatus) latest.current.onStatus(s);
      },
    });
    setStatus(live.getStatus());
    return () => {
      active = false;
      live.close();
    };
  }, [eventId, url, token, Pusher]);

  return { status, lastChange };
}
