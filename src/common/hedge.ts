/**
 * One request to a list of servers that does not wait on a frozen one: the
 * first server gets it; when it has not answered after `afterMs` the next
 * gets it too, then another every `everyMs`; the first answer wins and the
 * others are aborted (an answer that still comes is discarded). A server
 * that fails (refused connection) passes the request on at once.
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
 */
export function hedge<T>(
  servers: readonly string[],
  send: (server: string, signal: AbortSignal) => Promise<T>,
  options: HedgeTiming & { signal?: AbortSignal; discard?: (answer: T) => void },
): Promise<{ server: string; answer: T }> {
  return new Promise((resolve, reject) => {
    const attempts: AbortController[] = [];
    let next = 0;
    let pending = 0;
    let settled = false;
    let lastError: unknown;
    let timer: NodeJS.Timeout | undefined;
    const finish = () => {
      settled = true;
      clearTimeout(timer);
      for (const a of attempts) a.abort(new Error("another server answered first"));
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
          // Not aborted with the others: it won.
          attempts.splice(attempts.indexOf(own), 1);
          finish();
          resolve({ server, answer });
        },
        (err) => {
          pending--;
          if (settled) return;
          lastError = err;
          if (options.signal?.aborted) {
            finish();
            return reject(err);
          }
          if (next < servers.length) return launch();
          if (pending === 0) {
            finish();
            reject(lastError);
          }
        },
      );
      timer = setTimeout(launch, next === 1 ? options.afterMs : options.everyMs);
    };
    launch();
  });
}
