// Small pieces every page uses: state badges, error boxes, loading, confirm-to-act buttons.

import { type ReactNode, useState } from "react";
import { ApiError } from "../api.ts";

const GOOD = new Set(["running", "ready", "succeeded", "firing-none"]);
const BAD = new Set(["failed", "crashed", "lost", "firing", "NotReady", "down"]);

/** A state as a coloured word (the colour is never the only signal: the word is there). */
export function StateBadge({ state }: { state: string }) {
  const tone = GOOD.has(state) ? "good" : BAD.has(state) ? "bad" : "busy";
  return <span className={`badge ${tone}`}>{state.replace("_", " ")}</span>;
}

export function ErrorBox({ error }: { error: Error | undefined }) {
  if (!error) return null;
  const status = error instanceof ApiError && error.status ? ` (${error.status})` : "";
  return (
    <div className="error" role="alert">
      {error.message}
      {status}
    </div>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p className="muted" aria-busy="true">
      Loading {what}…
    </p>
  );
}

/**
 * A button that runs an action, shows it is busy, and reports its error.
 * With `confirm`, the first press asks and the second acts.
 */
export function ActionButton(props: {
  label: string;
  onAct: () => Promise<unknown>;
  confirm?: string;
  kind?: "primary" | "danger" | "plain";
  disabled?: boolean;
  title?: string;
  testId?: string;
}) {
  const [busy, setBusy] = useState(false);
  const [asking, setAsking] = useState(false);
  const [error, setError] = useState<Error>();
  const act = async () => {
    if (props.confirm && !asking) {
      setAsking(true);
      return;
    }
    setAsking(false);
    setBusy(true);
    setError(undefined);
    try {
      await props.onAct();
    } catch (err) {
      setError(err as Error);
    } finally {
      setBusy(false);
    }
  };
  return (
    <span className="action">
      <button
        type="button"
        className={props.kind ?? "plain"}
        onClick={act}
        disabled={busy || props.disabled}
        title={props.title}
        data-testid={props.testId}
      >
        {busy ? `${props.label}…` : asking ? (props.confirm ?? props.label) : props.label}
      </button>
      {asking ? (
        <button type="button" className="plain" onClick={() => setAsking(false)}>
          Cancel
        </button>
      ) : null}
      {error ? (
        <span className="error inline" role="alert">
          {error.message}
        </span>
      ) : null}
    </span>
  );
}

export function Section(props: { title: string; children: ReactNode; actions?: ReactNode; id?: string }) {
  return (
    <section className="card" aria-labelledby={props.id ? `${props.id}-h` : undefined}>
      <header>
        <h2 id={props.id ? `${props.id}-h` : undefined}>{props.title}</h2>
        {props.actions}
      </header>
      {props.children}
    </section>
  );
}

/** A table's header row: a column per name, and with `actions` one more for buttons (named for screen readers only). */
export function TableHead({ columns, actions }: { columns: readonly string[]; actions?: boolean }) {
  return (
    <thead>
      <tr>
        {columns.map((c) => (
          <th key={c} scope="col">
            {c}
          </th>
        ))}
        {actions ? (
          <th scope="col">
            <span className="sr-only">Actions</span>
          </th>
        ) : null}
      </tr>
    </thead>
  );
}

/** A bar of used / total (node capacity). */
export function Meter({ used, total, label }: { used: number; total: number; label: string }) {
  const share = total > 0 ? Math.min(1, used / total) : 0;
  return (
    // biome-ignore lint/a11y/useSemanticElements: a <meter> cannot be styled alike in every browser
    <div
      className="meter"
      role="meter"
      aria-label={label}
      aria-valuemin={0}
      aria-valuemax={total}
      aria-valuenow={used}
    >
      <div className={share > 0.9 ? "fill hot" : "fill"} style={{ width: `${(share * 100).toFixed(1)}%` }} />
    </div>
  );
}
