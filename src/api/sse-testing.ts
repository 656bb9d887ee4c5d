/**
 * A Server-Sent Events reader for tests: collects events (id + JSON data)
 * and comments as they arrive, and waits for a condition on them.
 */

/** One SSE event: its `id:` and its `data:` parsed as JSON. */
export interface SseEvent<T> {
  id?: string;
  data: T;
}

/** An open SSE stream; close() ends it. */
export interface EventStream<T> {
  readonly events: SseEvent<T>[];
  readonly comments: string[];
  readonly status: number;
  readonly contentType: string;
  /** Resolves once `check` holds (checked again as data arrives); rejects after timeoutMs. */
  until(check: () => boolean, what: string, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

/** Opens `url` with Accept: text/event-stream and the given headers. */
export function openEventStream<T>(url: string, headers: Record<string, string> = {}): EventStream<T> {
  const controller = new AbortController();
  const events: SseEvent<T>[] = [];
  const comments: string[] = [];
  let status = 0;
  let contentType = "";
  let wake: (() => void) | undefined;
  const done = (async () => {
    try {
      const res = await fetch(url, {
        headers: { accept: "text/event-stream", ...headers },
        signal: controller.signal,
      });
      status = res.status;
      contentType = res.headers.get("content-type") ?? "";
      let buffer = "";
      const decoder = new TextDecoder();
      for await (const chunk of res.body!) {
        buffer += decoder.decode(chunk, { stream: true });
        let end = buffer.indexOf("\n\n");
        while (end >= 0) {
          const fields = buffer.slice(0, end).split("\n");
          buffer = buffer.slice(end + 2);
          const data = fields.filter((f) => f.startsWith("data: ")).map((f) => f.slice(6));
          for (const f of fields) if (f.startsWith(":")) comments.push(f.slice(1).trim());
          if (data.length > 0) {
            const id = fields.find((f) => f.startsWith("id: "))?.slice(4);
            events.push({ id, data: JSON.parse(data.join("\n")) as T });
          }
          end = buffer.indexOf("\n\n");
        }
        wake?.();
      }
    } catch {
      // Aborted by close(), or the server went away.
    }
    wake?.();
  })();
  return {
    events,
    comments,
    get status() {
      return status;
    },
    get contentType() {
      return contentType;
    },
    async until(check, what, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      while (!check()) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, 50);
        });
      }
    },
    async close() {
      controller.abort();
      await done;
    },
  };
}
