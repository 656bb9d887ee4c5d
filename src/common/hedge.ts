/**
 * One request to a list of servers that does not wait on a frozen one: the
 * first server gets it; when it has not answered after `afterMs` the next
 * gets it too, then another every `everyMs`; the first answer wins and the
 * others are aborted (an answer that still comes is discarded). A server
 * that fails (refused connection), or gives an answer `passOn` says is no
 * answer (a follower's 503), passes the request on at once; such an answer is
 * the result only when no server gives a better one.
 *
 *   t=0 ─► servers[0] ── t=afterMs, no answer ─► servers[1] ── +everyMs ─► servers[2] …
 *   first answer ─► winner (abort the rest)      all failed ─► the last error
 *
 * For requests that may be sent twice (reads, heartbeats, load reports, PUT):
 * a frozen server that wakes may still carry out the one it held.
 */

/** How long to wait before the next server is tried as well. */
export interface HedgeTiming {
  afterMs: number;
  everyMs: number;
}

/** The default: a second server after 1 s without an answer, then another every 500 ms. */
export const HEDGE: HedgeTiming = { afterMs: 1000, everyMs: 500 };

/**
 * Sends `send(server, signal)` to `servers` in order as described above;
 * resolves with the first answer and the server that gave it. `discard`
 * releases an answer that lost the race. `signal` aborts every attempt.
 * `passOn`: an answer that does not win, but is kept in case none does.
 */
export function hedge<T>(
  servers: readonly string[],
  send: (server: string, signal: AbortSignal) => Promise<T>,
  options: HedgeTiming & {
    signal?: AbortSignal;
    discard?: (answer: T) => void;
    passOn?: (answer: T) => boolean;
  },
): Promise<{ server: string; answer: T }> {
  return new Promise((resolve, reject) => {
    const attempts: AbortController[] = [];
    let next = 0;
    let pending = 0;
    let settled = false;
    let lastError: unknown;
    /** The first answer passed on: the result if no other answers. */
    let kept: { server: string; answer: T } | undefined;
    let timer: NodeJS.Timeout | undefined;
    const finish = () => {
      settled = true;
      clearTimeout(timer);
      for (const a of attempts) a.abort(new Error("another server answered first"));
    };
    /** Every server asked has failed or passed on: the answer kept, else the last error. */
    const exhausted = () => {
      finish();
      if (kept) resolve(kept);
      else reject(lastError);
    };
    const launch = () => {
      clearTimeout(timer);
      if (settled || next >= servers.length) return;
      const server = servers[next++];
      const own = new AbortController();
      attempts.push(own);
      const signal = options.signal ? AbortSignal.any([own.signal, options.signal]) : own.signal;
      pending++;
      send(server, signal).then(
        (answer) => {
          pending--;
          if (settled) return options.discard?.(answer);
          if (options.passOn?.(answer)) {
            if (kept) options.discard?.(answer);
            else {
              // Kept whole: not aborted with the others when the hedge ends.
              attempts.splice(attempts.indexOf(own), 1);
              kept = { server, answer };
            }
            if (next < servers.length) return launch();
            if (pending === 0) exhausted();
            return;
          }
          // Not aborted with the others: it won.
          attempts.splice(attempts.indexOf(own), 1);
          finish();
          if (kept) options.discard?.(kept.answer);
          resolve({ server, answer });
        },
        (err) => {
          pending--;
          if (settled) return;
          lastError = err;
          if (options.signal?.aborted) {
            finish();
            if (kept) options.discard?.(kept.answer);
            return reject(err);
          }
          if (next < servers.length) return launch();
          if (pending === 0) exhausted();
        },
      );
      timer = setTimeout(launch, next === 1 ? options.afterMs : options.everyMs);
    };
    launch();
  });
}
