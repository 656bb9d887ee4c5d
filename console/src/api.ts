// The console's one way to the API: a Client holds the token and the tenant,
// adds both to every call, and turns error replies ({code, message}) into ApiError.
//
//   page ─► client.get("/apps") ─► fetch /api/v1/apps?tenant=acme (Authorization: Bearer …)
//   page ─► client.follow("/apps/hello/logs", …) ─► SSE over fetch (EventSource cannot send a token)

/** An error reply of the API, or a network failure (status 0). */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Dispatched on window when the API answers 401 to a signed-in call (the token was revoked or expired). */
export const UNAUTHORIZED = "herd-unauthorized";

export interface CallOptions {
  method?: string;
  body?: unknown;
  /** Raw body (a deploy's archive): sent as is with this content type. */
  raw?: { data: Blob; type: string };
  /** Add `?tenant=` (default true; false for whoami and the tenant list). */
  scoped?: boolean;
  query?: Record<string, string | number | boolean | undefined>;
  signal?: AbortSignal;
}

export class Client {
  readonly token: string;
  readonly tenant: string | undefined;

  constructor(token: string, tenant?: string) {
    this.token = token;
    this.tenant = tenant;
  }

  url(path: string, options: Pick<CallOptions, "scoped" | "query"> = {}): string {
    const params = new URLSearchParams();
    if (options.scoped !== false && this.tenant) params.set("tenant", this.tenant);
    for (const [k, v] of Object.entries(options.query ?? {})) if (v !== undefined) params.set(k, String(v));
    const qs = params.toString();
    return `/api/v1${path}${qs ? `?${qs}` : ""}`;
  }

  async call<T>(path: string, options: CallOptions = {}): Promise<T> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.token}` };
    let body: BodyInit | undefined;
    if (options.raw) {
      headers["content-type"] = options.raw.type;
      body = options.raw.data;
    } else if (options.body !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(options.body);
    }
    let res: Response;
    try {
      res = await fetch(this.url(path, options), {
        method: options.method ?? "GET",
        headers,
        body,
        signal: options.signal,
      });
    } catch (err) {
      if ((err as Error).name === "AbortError") throw err;
      throw new ApiError(0, "unavailable", `the control plane did not answer (${(err as Error).message})`);
    }
    const text = await res.text();
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    if (!res.ok) {
      const e = (json ?? {}) as { code?: string; message?: string };
      const err = new ApiError(
        res.status,
        e.code ?? "internal",
        e.message ?? `${res.status} ${res.statusText}`,
      );
      if (res.status === 401) window.dispatchEvent(new CustomEvent(UNAUTHORIZED, { detail: err }));
      throw err;
    }
    return json as T;
  }

  get<T>(path: string, options: Omit<CallOptions, "method" | "body"> = {}): Promise<T> {
    return this.call<T>(path, options);
  }

  post<T>(path: string, body?: unknown, options: Omit<CallOptions, "method" | "body"> = {}): Promise<T> {
    return this.call<T>(path, { ...options, method: "POST", body: body ?? {} });
  }

  /** Reads an NDJSON stream (a deploy's log) to its end, each line parsed and handed to `onLine`. */
  async lines<T>(path: string, onLine: (line: T) => void, signal?: AbortSignal): Promise<void> {
    const res = await fetch(this.url(path), { headers: { authorization: `Bearer ${this.token}` }, signal });
    if (!res.ok || !res.body) {
      const e = (await res.json().catch(() => ({}))) as { code?: string; message?: string };
      throw new ApiError(res.status, e.code ?? "internal", e.message ?? `${res.status}`);
    }
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end = buffer.indexOf("\n");
      while (end >= 0) {
        const line = buffer.slice(0, end).trim();
        buffer = buffer.slice(end + 1);
        end = buffer.indexOf("\n");
        if (line) onLine(JSON.parse(line) as T);
      }
    }
  }

  /**
   * Follows a Server-Sent Events stream (the log stream) until `signal` aborts:
   * each `data:` is parsed as JSON and handed to `onData`. Reconnects after a
   * break from the last `id:` it saw, as an EventSource would.
   */
  async follow<T>(
    path: string,
    query: CallOptions["query"],
    onData: (data: T) => void,
    signal: AbortSignal,
    onState?: (state: "open" | "retrying", why?: string) => void,
  ): Promise<void> {
    let lastId: string | undefined;
    while (!signal.aborted) {
      try {
        const res = await fetch(this.url(path, { query: { ...query, follow: true } }), {
          headers: {
            authorization: `Bearer ${this.token}`,
            accept: "text/event-stream",
            ...(lastId ? { "last-event-id": lastId } : {}),
          },
          signal,
        });
        if (!res.ok || !res.body) {
          const e = (await res.json().catch(() => ({}))) as { code?: string; message?: string };
          throw new ApiError(res.status, e.code ?? "internal", e.message ?? `${res.status}`);
        }
        onState?.("open");
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let end = buffer.indexOf("\n\n");
          while (end >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            end = buffer.indexOf("\n\n");
            let data = "";
            for (const line of block.split("\n")) {
              if (line.startsWith("id: ")) lastId = line.slice(4);
              else if (line.startsWith("data: ")) data += line.slice(6);
            }
            if (data) onData(JSON.parse(data) as T);
          }
        }
      } catch (err) {
        if (signal.aborted) return;
        // A refusal does not get better by retrying.
        if (err instanceof ApiError && err.status >= 400 && err.status < 500) throw err;
        onState?.("retrying", (err as Error).message);
      }
      if (!signal.aborted) await new Promise((r) => setTimeout(r, 1000));
    }
  }
}
