// One instance: its state and why, where it runs, its last crash output, and
// its own live log.

import type { Instance } from "../../../src/model/objects.ts";
import { LogView } from "../components/log-view.tsx";
import { ErrorBox, Loading, Section, StateBadge } from "../components/ui.tsx";
import { ago, bytes, cores } from "../format.ts";
import { Link } from "../router.tsx";
import { useSession } from "../session.tsx";
import { usePoll } from "../use-poll.ts";

export function InstancePage({ params }: { params: Record<string, string> }) {
  const { client } = useSession();
  const { app, id } = params;
  const path = `/apps/${encodeURIComponent(app)}`;
  const list = usePoll((signal) => client.get<{ items: Instance[] }>(`${path}/instances`, { signal }), 2000, [
    client,
    app,
  ]);
  const i = list.data?.items.find((x) => x.id === id);
  return (
    <div className="page">
      <nav className="crumbs" aria-label="breadcrumb">
        <Link to="/">Overview</Link> / <Link to={path}>{app}</Link> / <span>{id}</span>
      </nav>
      <h1>
        {id} {i ? <StateBadge state={i.state} /> : null}
      </h1>
      <ErrorBox error={list.error} />
      {!list.data ? (
        <Loading what={id} />
      ) : !i ? (
        <p className="muted">
          No instance {id} in app {app} (it may have been replaced).
        </p>
      ) : (
        <Section title="Instance" id="instance">
          <dl className="facts">
            <dt>Service</dt>
            <dd>{i.service}</dd>
            <dt>Release</dt>
            <dd>v{i.release}</dd>
            <dt>Node</dt>
            <dd>{i.node ?? "—"}</dd>
            <dt>Mode</dt>
            <dd>{i.mode}</dd>
            <dt>Desired</dt>
            <dd>{i.desired}</dd>
            <dt>Why</dt>
            <dd>{i.message || i.reason || "—"}</dd>
            <dt>Restarts</dt>
            <dd>{i.restarts}</dd>
            <dt>Started</dt>
            <dd>{ago(i.startedAt)}</dd>
            <dt>Size</dt>
            <dd>
              {cores(i.run.resources.cpu)}, {bytes(i.run.resources.memory)}
            </dd>
            <dt>Process</dt>
            <dd>
              {i.pid ? `pid ${i.pid}` : "—"}
              {i.port ? `, port ${i.port}` : ""}
              {i.exitCode !== undefined && i.exitCode !== null ? `, exit ${i.exitCode}` : ""}
            </dd>
          </dl>
          {i.logTail?.length ? (
            <>
              <h3>Last lines before it stopped</h3>
              <pre className="log">{i.logTail.join("\n")}</pre>
            </>
          ) : null}
        </Section>
      )}
      <LogView path={`${path}/logs`} instance={id} />
    </div>
  );
}
