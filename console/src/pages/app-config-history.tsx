// The config tab's history: every version newest first (who, when, why, how
// many entries, which version it restored), what each changed against the one
// before (opened on demand), and a rollback to any other version for those who
// may deploy: a new version with that one's content.
//
//   GET /apps/:app/config/versions · …/config/diff?to=N · POST …/config/rollback

import { useState } from "react";
import type { ConfigEntry, ConfigVersionSummary } from "../../../src/model/config.ts";
import type { EntryChange } from "../api-types.ts";
import { ActionButton, ErrorBox, Loading, Section, TableHead } from "../components/ui.tsx";
import { ago } from "../format.ts";
import { useSession } from "../session.tsx";
import { usePoll } from "../use-poll.ts";

export function ConfigHistory(props: {
  path: string;
  stable: number | undefined;
  /** The version in gray release, if any: it is promoted or aborted, not rolled back to. */
  gray: number | undefined;
  mayWrite: boolean;
  /** Changes when the tab made a version: load again at once. */
  tick: number;
  done(): void;
}) {
  const { client } = useSession();
  const versions = usePoll(
    (signal) => client.get<{ items: ConfigVersionSummary[] }>(`${props.path}/versions`, { signal }),
    10_000,
    [client, props.path, props.tick],
  );
  const [open, setOpen] = useState<number>();
  return (
    <Section title="History" id="config-history">
      <ErrorBox error={versions.error} />
      {!versions.data ? (
        <Loading what="config history" />
      ) : versions.data.items.length === 0 ? (
        <p className="muted">No versions yet.</p>
      ) : (
        <div className="scroll">
          <table data-testid="config-history">
            <TableHead columns={["Version", "When", "Who", "Why", "Entries"]} actions />
            <tbody>
              {[...versions.data.items].reverse().flatMap((v) => [
                <tr key={v.version} data-testid={`config-v${v.version}`}>
                  <th scope="row">
                    v{v.version}{" "}
                    {v.version === props.stable ? <span className="badge good">stable</span> : null}
                    {v.version === props.gray ? <span className="badge busy">gray</span> : null}
                  </th>
                  <td title={v.createdAt}>{ago(v.createdAt)}</td>
                  <td>{v.author}</td>
                  <td>
                    {v.message}
                    {v.rollbackOf !== undefined ? (
                      <span className="muted"> (content of v{v.rollbackOf})</span>
                    ) : null}
                  </td>
                  <td>{v.entries}</td>
                  <td>
                    <span className="action">
                      <button
                        type="button"
                        className="plain"
                        aria-expanded={open === v.version}
                        data-testid={`config-diff-v${v.version}`}
                        onClick={() => setOpen(open === v.version ? undefined : v.version)}
                      >
                        {open === v.version ? "Hide changes" : "Changes"}
                      </button>
                      {props.mayWrite && v.version !== props.stable && v.version !== props.gray ? (
                        <ActionButton
                          label={`Roll back to v${v.version}`}
                          confirm={`Confirm roll back to v${v.version}`}
                          kind="danger"
                          testId={`config-rollback-v${v.version}`}
                          onAct={async () => {
                            await client.post(`${props.path}/rollback`, { version: v.version });
                            props.done();
                          }}
                        />
                      ) : null}
                    </span>
                  </td>
                </tr>,
                open === v.version ? (
                  <tr key={`${v.version}-diff`}>
                    <td colSpan={6}>
                      <Diff path={props.path} to={v.version} />
                    </td>
                  </tr>
                ) : null,
              ])}
            </tbody>
          </table>
        </div>
      )}
    </Section>
  );
}

/** What version `to` changed against the one before it. */
function Diff({ path, to }: { path: string; to: number }) {
  const { client } = useSession();
  const diff = usePoll(
    (signal) =>
      client.get<{ from: number; changes: EntryChange[] }>(`${path}/diff`, { query: { to }, signal }),
    60_000,
    [client, path, to],
  );
  if (diff.error) return <ErrorBox error={diff.error} />;
  if (!diff.data) return <Loading what={`changes of v${to}`} />;
  if (diff.data.changes.length === 0) return <p className="muted">Same content as v{diff.data.from}.</p>;
  return (
    <table className="diff" data-testid={`config-changes-v${to}`}>
      <TableHead columns={["Entry", "Change", `Before (v${diff.data.from})`, `After (v${to})`]} />
      <tbody>
        {diff.data.changes.map((c) => (
          <tr key={c.name}>
            <th scope="row">
              <code>{c.name}</code>
            </th>
            <td>{c.change}</td>
            <td>
              <EntryText entry={c.before} />
            </td>
            <td>
              <EntryText entry={c.after} />
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export function EntryText({ entry }: { entry: ConfigEntry | undefined }) {
  if (!entry) return <span className="muted">—</span>;
  if (entry.kind === "key") return <code className="value">{entry.value}</code>;
  return (
    <>
      <span className="muted small">{entry.format} file</span>
      <pre className="content">{entry.content}</pre>
    </>
  );
}
