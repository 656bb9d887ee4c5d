// The App page's deploy: upload the source as a .tar.gz (what `herd deploy`
// packs: `tar czf app.tgz -C dir .`), then follow the build and the rollout.

import { type FormEvent, useEffect, useRef, useState } from "react";
import type { Deploy } from "../../../src/model/objects.ts";
import { type DeployLogLine, DeployLogView } from "../components/deploy-log.tsx";
import { ErrorBox, Section, StateBadge } from "../components/ui.tsx";
import { useSession } from "../session.tsx";

export function DeployTab({ app, onDeployed }: { app: string; onDeployed(): void }) {
  const { client, can } = useSession();
  const [file, setFile] = useState<File>();
  const [deploy, setDeploy] = useState<Deploy>();
  const [log, setLog] = useState<DeployLogLine[]>([]);
  const [state, setState] = useState<string>();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Error>();
  const abort = useRef<AbortController>(undefined);
  useEffect(() => () => abort.current?.abort(), []);
  const path = `/apps/${encodeURIComponent(app)}`;

  if (!can("apps:write")) {
    return (
      <Section title="Deploy" id="deploy">
        <p className="muted">Your role cannot deploy to this tenant.</p>
      </Section>
    );
  }

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    if (!file) return;
    setBusy(true);
    setError(undefined);
    setLog([]);
    setState(undefined);
    abort.current?.abort();
    abort.current = new AbortController();
    try {
      const d = await client.call<Deploy>(`${path}/deploys`, {
        method: "POST",
        raw: { data: file, type: "application/gzip" },
      });
      setDeploy(d);
      setState(d.state);
      await client.lines<DeployLogLine>(
        `${path}/deploys/${d.id}/log`,
        (line) => {
          setLog((l) => [...l, line]);
          if (line.state) setState(line.state);
        },
        abort.current.signal,
      );
      onDeployed();
    } catch (err) {
      if ((err as Error).name !== "AbortError") setError(err as Error);
    } finally {
      setBusy(false);
    }
  };

  return (
    <Section title="Deploy from an archive" id="deploy">
      <form onSubmit={submit} className="row">
        <label className="field">
          <span>Source archive (.tar.gz with herd.yaml or a Procfile at its top)</span>
          <input
            type="file"
            accept=".tgz,.tar.gz,application/gzip"
            onChange={(e) => setFile(e.target.files?.[0])}
            data-testid="deploy-file"
          />
        </label>
        <button type="submit" className="primary" disabled={!file || busy}>
          {busy ? "Deploying…" : `Deploy to ${app}`}
        </button>
      </form>
      <p className="small muted">
        Make one with <code>tar czf app.tgz -C my-app .</code>; <code>herd deploy</code> does the same and
        honours <code>.herdignore</code>.
      </p>
      <ErrorBox error={error} />
      {deploy ? (
        <>
          <p>
            Deploy <code>{deploy.id}</code> {state ? <StateBadge state={state} /> : null}
          </p>
          <DeployLogView lines={log} testId="deploy-log" />
        </>
      ) : null}
    </Section>
  );
}
