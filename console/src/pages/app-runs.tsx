// The App page's runs (docs/jobs.md): its scheduled jobs with their next time
// and last run; its runs newest first — one-off commands (`herd run`), release
// phases and scheduled runs — with state, exit code and who started them; one
// run opened with its live output (the app's log stream under the run's id).
// A deployer runs a command (with a service's env, secrets and resources, as
// `herd run`) and stops a run.
//
//   GET /apps/:app/jobs · GET /apps/:app/runs · POST /apps/:app/runs · POST …/runs/:id/stop

import { useState } from "react";
import type { JobView, Run, RunState } from "../../../src/model/job.ts";
import { LogView } from "../components/log-view.tsx";
import { ActionButton, ErrorBox, Loading, Section, StateBadge, TableHead } from "../components/ui.tsx";
import { ago } from "../format.ts";
import { Link, navigate, withTenant } from "../router.tsx";
import { useSession } from "../session.tsx";
import { usePoll } from "../use-poll.ts";
import type { AppDetail } from "./app.tsx";

/** States a run does not leave (model/job.ts FINISHED, which would bring its schemas into the bundle). */
const FINISHED = new Set<RunState>(["succeeded", "failed", "stopped", "timed_out", "skipped"]);

const took = (r: Pick<Run, "startedAt" | "finishedAt">) =>
  r.startedAt && r.finishedAt
    ? `${((Date.parse(r.finishedAt) - Date.parse(r.startedAt)) / 1000).toFixed(1)} s`
    : "—";

export function RunsTab({ detail, open }: { detail: AppDetail; open: string | undefined }) {
  const { client, can } = useSession();
  const app = detail.app.name;
  const path = `/apps/${encodeURIComponent(app)}`;
  const jobs = usePoll((signal) => client.get<{ items: JobView[] }>(`${path}/jobs`, { signal }), 10_000, [
    client,
    path,
  ]);
  const runs = usePoll(
    (signal) => client.get<{ items: Run[] }>(`${path}/runs`, { query: { limit: 50 }, signal }),
    2000,
    [client, path],
  );
  const mayWrite = can("apps:write");
  // The list's copy when it has the run; read on its own only when it is older than the list's last 50.
  const listed = runs.data?.items.find((r) => r.id === open);
  const missing = open !== undefined && runs.data !== undefined && !listed;
  const one = usePoll(
    (signal) =>
      missing
        ? client.get<Run>(`${path}/runs/${encodeURIComponent(open)}`, { signal })
        : Promise.resolve(undefined),
    2000,
    [client, path, open, missing],
  );
  const opened = listed ?? one.data;
  const openRun = (id: string) => navigate(withTenant(`${path}/runs/${encodeURIComponent(id)}`));
  return (
    <>
      {mayWrite ? (
        <RunForm path={path} services={detail.services.map((s) => s.name)} onRun={openRun} />
      ) : null}
      {open ? (
        <Section title={`Run ${open}`} id="run">
          <ErrorBox error={one.error} />
          {opened ? (
            <p data-testid="run-state">
              <StateBadge state={opened.state} /> <code>{opened.command}</code> · {opened.service} v
              {opened.release}
              {opened.exitCode !== undefined && opened.exitCode !== null
                ? ` · exit code ${opened.exitCode}`
                : ""}
              {opened.message ? <span className="muted"> · {opened.message}</span> : null}
            </p>
          ) : one.error ? null : (
            <Loading what={`run ${open}`} />
          )}
          <LogView path={`${path}/logs`} instance={open} />
        </Section>
      ) : null}
      <Section title="Scheduled jobs" id="jobs">
        <ErrorBox error={jobs.error} />
        {!jobs.data ? (
          <Loading what="jobs" />
        ) : jobs.data.items.length === 0 ? (
          <p className="muted">No scheduled jobs (herd.yaml `jobs:`).</p>
        ) : (
          <div className="scroll">
            <table data-testid="jobs">
              <TableHead columns={["Job", "Schedule", "Command", "Next", "Last run"]} />
              <tbody>
                {jobs.data.items.map((j) => (
                  <tr key={j.name} data-testid={`job-${j.name}`}>
                    <th scope="row">{j.name}</th>
                    <td>
                      <code>{j.schedule}</code>
                    </td>
                    <td>
                      <code>{j.command}</code>
                    </td>
                    <td title={j.next ?? ""}>{j.next ? j.next.replace("T", " ").slice(0, 19) : "—"}</td>
                    <td>
                      {j.last ? (
                        <Link to={`${path}/runs/${encodeURIComponent(j.last.id)}`}>
                          <StateBadge state={j.last.state} /> {ago(j.last.finishedAt ?? j.last.startedAt)}
                        </Link>
                      ) : (
                        <span className="muted">none yet</span>
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </Section>
      <Section title="Runs" id="runs">
        <ErrorBox error={runs.error} />
        {!runs.data ? (
          <Loading what="runs" />
        ) : runs.data.items.length === 0 ? (
          <p className="muted">No runs yet.</p>
        ) : (
          <div className="scroll">
            <table data-testid="runs">
              <TableHead
                columns={["Run", "Kind", "Command", "State", "Started", "Took", "By"]}
                actions={mayWrite}
              />
              <tbody>
                {runs.data.items.map((r) => (
                  <tr
                    key={r.id}
                    data-testid={`run-${r.id}`}
                    aria-current={r.id === open ? "true" : undefined}
                  >
                    <th scope="row">
                      <Link to={`${path}/runs/${encodeURIComponent(r.id)}`}>{r.id}</Link>
                    </th>
                    <td>{r.job ? `job ${r.job}` : r.kind}</td>
                    <td>
                      <code>{r.command.length > 60 ? `${r.command.slice(0, 60)}…` : r.command}</code>
                    </td>
                    <td>
                      <StateBadge state={r.state} />
                      {r.exitCode !== undefined && r.exitCode !== null && r.exitCode !== 0
                        ? ` ${r.exitCode}`
                        : ""}
                    </td>
                    <td title={r.startedAt ?? r.createdAt}>{ago(r.startedAt ?? r.createdAt)}</td>
                    <td>{took(r)}</td>
                    <td>{r.createdBy ?? "—"}</td>
                    {mayWrite ? (
                      <td>
                        {FINISHED.has(r.state) ? null : (
                          <ActionButton
                            label="Stop"
                            kind="danger"
                            confirm={`Confirm stop ${r.id}`}
                            testId={`run-stop-${r.id}`}
                            onAct={async () => {
                              await client.post(`${path}/runs/${encodeURIComponent(r.id)}/stop`);
                              runs.reload();
                            }}
                          />
                        )}
                      </td>
                    ) : null}
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </Section>
    </>
  );
}

/** Run a command as `herd run` does: from the serving release, with a service's env, secrets and resources. */
function RunForm(props: { path: string; services: string[]; onRun(id: string): void }) {
  const { client } = useSession();
  const [command, setCommand] = useState("");
  const [service, setService] = useState(props.services.includes("web") ? "web" : (props.services[0] ?? ""));
  return (
    <Section title="Run a command" id="run-command">
      <form className="row" onSubmit={(e) => e.preventDefault()}>
        <label className="field inline grow">
          <span>Command</span>
          <input
            value={command}
            onChange={(e) => setCommand(e.target.value)}
            placeholder="node migrate.js"
            data-testid="run-command"
          />
        </label>
        <label className="field inline">
          <span>As service</span>
          <select value={service} onChange={(e) => setService(e.target.value)}>
            {props.services.map((s) => (
              <option key={s}>{s}</option>
            ))}
          </select>
        </label>
        <ActionButton
          label="Run"
          kind="primary"
          disabled={!command || !service}
          testId="run-start"
          onAct={async () => {
            const run = await client.post<Run>(`${props.path}/runs`, { command, service });
            setCommand("");
            props.onRun(run.id);
          }}
        />
      </form>
      <p className="small muted">
        It runs once from the serving release, with the service's env, secrets and resources, as{" "}
        <code>herd run</code>; its output follows below.
      </p>
    </Section>
  );
}
