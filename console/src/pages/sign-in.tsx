// Sign in with a token: `herd tokens create` makes one; `herd up` leaves the
// admin's in <data>/admin-token. The token is checked with GET /whoami.

import { type FormEvent, useState } from "react";
import { ErrorBox } from "../components/ui.tsx";

export function SignInPage(props: {
  onSignIn: (token: string, remember: boolean) => Promise<void>;
  error?: Error;
  /** A stored token is being checked. */
  checking: boolean;
}) {
  const [token, setToken] = useState("");
  const [remember, setRemember] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Error>();
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      await props.onSignIn(token.trim(), remember);
    } catch (err) {
      setError(err as Error);
    } finally {
      setBusy(false);
    }
  };
  if (props.checking) return <p className="muted center">Signing in…</p>;
  return (
    <main className="signin" id="main">
      <form onSubmit={submit} aria-labelledby="signin-h">
        <h1 id="signin-h">herd</h1>
        <p className="muted">Sign in with an API token.</p>
        <label className="field">
          <span>Token</span>
          <input
            type="password"
            name="token"
            autoComplete="current-password"
            placeholder="herd_pat_…"
            value={token}
            onChange={(e) => setToken(e.target.value)}
            required
            // biome-ignore lint/a11y/noAutofocus: the page has one field; the token is what it asks for
            autoFocus
          />
        </label>
        <label className="check">
          <input type="checkbox" checked={remember} onChange={(e) => setRemember(e.target.checked)} />
          <span>Remember on this device</span>
        </label>
        <button type="submit" className="primary" disabled={busy || token.trim() === ""}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
        <ErrorBox error={error ?? props.error} />
        <p className="muted small">
          Make one with <code>herd tokens create</code>; the admin's is in{" "}
          <code>&lt;data&gt;/admin-token</code>. Without "remember", the token is kept for this tab only.
        </p>
      </form>
    </main>
  );
}
