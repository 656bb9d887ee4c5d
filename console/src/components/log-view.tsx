// A live log: follows an SSE log stream with filters (service, stream, level,
// text), keeps the last 2,000 entries, sticks to the bottom while following.

import { useEffect, useRef, useState } from "react";
import type { LogEntry } from "../api-types.ts";
import { Link } from "../router.tsx";
import { useSession } from "../session.tsx";
import { ErrorBox } from "./ui.tsx";

const KEEP = 2000;

export function LogView(props: { path: string; services?: string[]; instance?: string }) {
  const { client } = useSession();
  const [service, setService] = useState("");
  const [stream, setStream] = useState("");
  const [level, setLevel] = useState("");
  const [text, setText] = useState("");
  const [query, setQuery] = useState("");
  const [following, setFollowing] = useState(true);
  const [entries, setEntries] = useState<LogEntry[]>([]);
  const [status, setStatus] = useState("connecting");
  const [error, setError] = useState<Error>();
  const box = useRef<HTMLDivElement>(null);

  // The text filter applies when typing pauses, not on every key.
  useEffect(() => {
    const t = setTimeout(() => setQuery(text.trim()), 400);
    return () => clearTimeout(t);
  }, [text]);

  useEffect(() => {
    if (!following) {
      setStatus("paused");
      return;
    }
    const abort = new AbortController();
    setEntries([]);
    setError(undefined);
    setStatus("connecting");
    client
      .follow<LogEntry>(
        props.path,
        {
          tail: 200,
          service: service || undefined,
          instance: props.instance,
          stream: stream || undefined,
          level: level || undefined,
          text: query || undefined,
        },
        (e) => setEntries((all) => (all.length >= KEEP ? [...all.slice(-KEEP + 1), e] : [...all, e])),
        abort.signal,
        (state, why) => setStatus(state === "open" ? "following" : `reconnecting (${why ?? "stream ended"})`),
      )
      .catch((err: Error) => {
        setError(err);
        setStatus("stopped");
      });
    return () => abort.abort();
  }, [client, props.path, props.instance, service, stream, level, query, following]);

  // biome-ignore lint/correctness/useExhaustiveDependencies: scroll when entries change
  useEffect(() => {
    const el = box.current;
    if (el && following) el.scrollTop = el.scrollHeight;
  }, [entries, following]);

  return (
    <section className="card" aria-label="logs">
      <form className="row filters" onSubmit={(e) => e.preventDefault()}>
        {props.services ? (
          <label className="field inline">
            <span>Service</span>
            <select value={service} onChange={(e) => setService(e.target.value)} data-testid="log-service">
              <option value="">all</option>
              {props.services.map((s) => (
                <option key={s}>{s}</option>
              ))}
            </select>
          </label>
        ) : null}
        <label className="field inline">
          <span>Stream</span>
          <select value={stream} onChange={(e) => setStream(e.target.value)}>
            <option value="">all</option>
            <option>stdout</option>
            <option>stderr</option>
            <option value="event">events</option>
          </select>
        </label>
        <label className="field inline">
          <span>Level</span>
          <select value={level} onChange={(e) => setLevel(e.target.value)}>
            <option value="">any</option>
            {["debug", "info", "warn", "error", "fatal"].map((l) => (
              <option key={l} value={l}>
                {l} and above
              </option>
            ))}
          </select>
        </label>
        <label className="field inline grow">
          <span>Text</span>
          <input
            type="search"
            value={text}
            maxLength={200}
            onChange={(e) => setText(e.target.value)}
            placeholder="substring, any case"
            data-testid="log-text"
          />
        </label>
        <button
          type="button"
          className="plain"
          onClick={() => setFollowing((f) => !f)}
          aria-pressed={following}
        >
          {following ? "Pause" : "Follow"}
        </button>
        <span className="muted small" role="status" data-testid="log-status">
          {status} · {entries.length} lines
        </span>
      </form>
      <ErrorBox error={error} />
      <div
        className="log tall"
        ref={box}
        data-testid="log-lines"
        role="log"
        aria-label="log lines"
        // biome-ignore lint/a11y/noNoninteractiveTabindex: a scrolling region is reached and scrolled by keyboard
        tabIndex={0}
      >
        {entries.map((e) => (
          <div key={e.seq} className={`line ${e.stream}${e.level ? ` lv-${e.level}` : ""}`}>
            <span className="muted">{e.time.slice(11, 23)}</span> <span className="src">{e.instance}</span>{" "}
            {e.stream === "event" ? <strong>{e.reason} </strong> : null}
            {e.line}
            {e.traceId ? (
              <Link to={`/traces/${e.traceId}`} className="trace" data-testid="log-trace">
                {" "}
                trace {e.traceId.replace(/^0{16}/, "").slice(0, 16)}
              </Link>
            ) : null}
          </div>
        ))}
      </div>
    </section>
  );
}
