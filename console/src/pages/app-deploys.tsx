// The App page's deploy history: every deploy and rollback, newest first, with
// its state, the release it made, who started it, when, how long it took and
// why it failed; a deploy's id opens its build log (a deep link of its own,
// /apps/:app/deploys/:id), followed while the deploy runs.

import { useEffect, useState } from "react";
import type { Deploy } from "../../../src/model/objects.ts";
import { type DeployLogLine, DeployLogView } from "../components/deploy-log.tsx";
import { ErrorBox, Loading, Section, StateBadge } from "../components/ui.tsx";
import { ago } from "../format.ts";
import { Link } from "../router.tsx";
import { useSession } from "../session.tsx";
import { usePoll } from "../use-poll.ts";

/** GET /apps/:app/deploys (src/api/routes/deploys.ts). */
interface DeployList {
  items: (Deploy & { durationMs?: number; log: boolean })[];
  total: number;
  logsKept: number;
}

export function DeploysTab({ app, open }: { app: string; open: string | undefined }) {
  const { client } = useSession();
  const path = `/apps/${encodeURIComponent(app)}/deploys`;
  const list = usePoll((signal) => client.get<DeployList>(path, { signal }), 3000, [client, app]);
  return (
    <>
      <Section title="Deploys" id="deploys">
        <ErrorBox error={list.error} />
        {!list.data ? (
          <Loading what="deploys" />
        ) : list.data.items.length === 0 ? (
          <p className="muted">No deploys yet.</p>
        ) : (
          <div className="scroll">
            <table>
              <thead>
                <tr>
                  <th scope="col">Deploy</th>
                  <th scope="col">State</th>
                  <th scope="col">Release</th>
                  <th scope="col">Who</th>
                  <th scope="col">When</th>
                  <th scope="col">Took</th>
                  <th scope="col">Error</th>
                </tr>
              </thead>
              <tbody>
                {list.data.items.map((d) => (
                  <tr
                    key={d.id}
                    data-testid={`deploy-${d.id}`}
                    aria-current={d.id === open ? "true" : undefined}
                  >
                    <th scope="row">
                      {d.log ? (
                        <Link to={`${path}/${d.id}`} title="its build log">
                          <code>{d.id}</code>
                        </Link>
                      ) : (
                        <code title="its log is no longer kept">{d.id}</code>
                      )}
                      {d.rollback ? <span className="muted small"> rollback</span> : null}
                    </th>
                    <td>
                      <StateBadge state={d.state} />
                    </td>
                    <td>{d.release === undefined ? "—" : `v${d.release}`}</td>
                    <td>{d.createdBy ?? <span className="muted">—</span>}</td>
                    <td title={d.createdAt}>{ago(d.createdAt)}</td>
                    <td>{d.durationMs === undefined ? "—" : took(d.durationMs)}</td>
                    <td className="small">{d.state === "failed" ? d.message.split("\n")[0] : ""}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
        {list.data && list.data.total > list.data.items.length ? (
          <p className="small muted">
            The newest {list.data.items.length} of {list.data.total} deploys.
          </p>
        ) : null}
        <p className="small muted">
          Build logs are kept for each app's last {list.data?.logsKept ?? 20} deploys.
        </p>
      </Section>
      {open ? <DeployLogSection app={app} id={open} /> : null}
    </>
  );
}

/** One deploy's log, read to its end (followed while the deploy runs). */
function DeployLogSection({ app, id }: { app: string; id: string }) {
  const { client } = useSession();
  const [lines, setLines] = useState<DeployLogLine[]>([]);
  const [error, setError] = useState<Error>();
  useEffect(() => {
    const abort = new AbortController();
    setLines([]);
    setError(undefined);
    client
      .lines<DeployLogLine>(
        `/apps/${encodeURIComponent(app)}/deploys/${encodeURIComponent(id)}/log`,
        (line) => setLines((l) => [...l, line]),
        abort.signal,
      )
      .catch((err: Error) => {
        if (err.name !== "AbortError") setError(err);
      });
    return () => abort.abort();
  }, [client, app, id]);
  const done = lines.find((l) => l.type === "done");
  return (
    <Section title={`Deploy ${id}`} id="deploy-log">
      <ErrorBox error={error} />
      {done?.state ? (
        <p>
          <StateBadge state={done.state} />
        </p>
      ) : null}
      {!error ? <DeployLogView lines={lines} testId="deploy-history-log" /> : null}
    </Section>
  );
}

/** 850 → "0.9 s", 75 000 → "1 min 15 s". */
function took(ms: number): string {
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)} min ${s % 60} s`;
}
