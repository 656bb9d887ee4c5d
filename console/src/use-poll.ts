// Data a page shows and keeps fresh: loaded at once, again every `everyMs`
// (paused while the tab is hidden), and at once on reload().

import { type DependencyList, useCallback, useEffect, useRef, useState } from "react";

export interface Polled<T> {
  data: T | undefined;
  error: Error | undefined;
  /** Load again now (after a change the page made). */
  reload(): void;
}

export function usePoll<T>(
  load: (signal: AbortSignal) => Promise<T>,
  everyMs: number,
  deps: DependencyList,
): Polled<T> {
  const [data, setData] = useState<T>();
  const [error, setError] = useState<Error>();
  const [tick, setTick] = useState(0);
  const loadRef = useRef(load);
  loadRef.current = load;
  // biome-ignore lint/correctness/useExhaustiveDependencies: deps are the caller's; tick reloads
  useEffect(() => {
    const abort = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const run = async () => {
      if (document.visibilityState !== "hidden") {
        try {
          const value = await loadRef.current(abort.signal);
          if (abort.signal.aborted) return;
          setData(value);
          setError(undefined);
        } catch (err) {
          if (abort.signal.aborted) return;
          setError(err as Error);
        }
      }
      if (!abort.signal.aborted && everyMs > 0) timer = setTimeout(run, everyMs);
    };
    void run();
    return () => {
      abort.abort();
      clearTimeout(timer);
    };
  }, [...deps, tick, everyMs]);
  // A new set of deps starts from nothing, not from the last object's data.
  // biome-ignore lint/correctness/useExhaustiveDependencies: reset only when the caller's deps change
  useEffect(() => setData(undefined), deps);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { data, error, reload };
}
