// The App page's config (the config center, docs/config.md): the effective
// config every instance gets, each entry with the layer it came from; a
// version in gray release with promote and abort; a change form (a key, or a whole file checked in its format); which
// version each instance applied; and the history with diffs and rollback
// (app-config-history.tsx); the shared versions it pins (app-config-layers.tsx).
// Values are shown: secrets live in `herd secrets`.
//
//   GET /apps/:app/config · …/config/status · POST …/config/versions, …/promote, …/abort

import { useState } from "react";
import {
  type ConfigFormat,
  type ConfigHead,
  type EffectiveConfig,
  formatOfName,
  type LayerUses,
} from "../../../src/model/config.ts";
import type { InstanceConfigStatus } from "../api-types.ts";
import { ActionButton, ErrorBox, Loading, Section, TableHead } from "../components/ui.tsx";
import { ago, bytes } from "../format.ts";
import { Link } from "../router.tsx";
import { useSession } from "../session.tsx";
import { usePoll } from "../use-poll.ts";
import { ConfigHistory } from "./app-config-history.tsx";
import { ConfigLayers } from "./app-config-layers.tsx";

/** GET /apps/:app/config */
interface ConfigView {
  head: ConfigHead;
  config: EffectiveConfig | null;
  uses?: LayerUses;
}

const FORMATS: readonly ConfigFormat[] = ["json", "yaml", "properties", "text"];

export function ConfigTab({ app }: { app: string }) {
  const { client, can } = useSession();
  const path = `/apps/${encodeURIComponent(app)}/config`;
  const view = usePoll((signal) => client.get<ConfigView>(path, { signal }), 5000, [client, app]);
  const status = usePoll(
    (signal) => client.get<{ instances: InstanceConfigStatus[] }>(`${path}/status`, { signal }),
    5000,
    [client, app],
  );
  const [historyTick, setHistoryTick] = useState(0);
  const changed = () => {
    view.reload();
    status.reload();
    setHistoryTick((t) => t + 1);
  };
  const mayWrite = can("apps:write");
  const d = view.data;
  return (
    <>
      <Section title="Config" id="config">
        <ErrorBox error={view.error} />
        {!d ? (
          <Loading what="config" />
        ) : (
          <>
            <p data-testid="config-head">
              {d.head.stable === 0
                ? "No config yet: every instance gets version 0, with nothing in it."
                : `v${d.head.stable} for every instance`}
            </p>
            {d.head.gray ? <GrayBar head={d.head} path={path} mayWrite={mayWrite} done={changed} /> : null}
            <Entries config={d.config} path={path} mayWrite={mayWrite} done={changed} />
          </>
        )}
      </Section>
      {mayWrite ? <ChangeForm path={path} gray done={changed} /> : null}
      {d ? <ConfigLayers path={path} uses={d.uses} mayWrite={mayWrite} done={changed} /> : null}
      <Section title="Instances" id="config-instances">
        <ErrorBox error={status.error} />
        {!status.data ? (
          <Loading what="instances' config" />
        ) : (
          <Applied app={app} rows={status.data.instances} />
        )}
      </Section>
      <ConfigHistory
        path={path}
        stable={d?.head.stable}
        gray={d?.head.gray?.version}
        mayWrite={mayWrite}
        tick={historyTick}
        done={changed}
      />
    </>
  );
}

function GrayBar(props: { head: ConfigHead; path: string; mayWrite: boolean; done(): void }) {
  const { client } = useSession();
  const g = props.head.gray!;
  const who = [
    ...(g.share !== undefined ? [`${g.share} % of instances`] : []),
    ...(g.instances?.length ? [`instances ${g.instances.join(", ")}`] : []),
    ...Object.entries(g.labels ?? {}).map(([k, v]) => `${k}=${v}`),
  ].join(", ");
  return (
    <div className="row" data-testid="config-gray">
      <p>
        <span className="badge busy">gray</span> v{g.version} to {who}, since {ago(g.startedAt)} by {g.by}
      </p>
      {props.mayWrite ? (
        <>
          <ActionButton
            label={`Promote v${g.version}`}
            kind="primary"
            testId="config-promote"
            onAct={async () => {
              await client.post(`${props.path}/promote`);
              props.done();
            }}
          />
          <ActionButton
            label="Abort"
            kind="danger"
            confirm={`Confirm: back to v${props.head.stable}`}
            testId="config-abort"
            onAct={async () => {
              await client.post(`${props.path}/abort`);
              props.done();
            }}
          />
        </>
      ) : null}
    </div>
  );
}

function Entries(props: { config: EffectiveConfig | null; path: string; mayWrite: boolean; done(): void }) {
  const { client } = useSession();
  const c = props.config;
  const names = c ? [...Object.keys(c.values), ...Object.keys(c.files)].sort() : [];
  if (!c || names.length === 0) return <p className="muted">No keys or files.</p>;
  return (
    <div className="scroll">
      <table data-testid="config-entries">
        <TableHead columns={["Name", "Value", "From"]} actions />
        <tbody>
          {names.map((name) => {
            const file = c.files[name];
            const origin = c.origins[name] ?? "";
            return (
              <tr key={name} data-testid={`config-entry-${name}`}>
                <th scope="row">
                  <code>{name}</code>
                </th>
                <td>
                  {file ? (
                    <details>
                      <summary>
                        {file.format} file, {bytes(new TextEncoder().encode(file.content).length)}
                      </summary>
                      <pre className="content">{file.content}</pre>
                    </details>
                  ) : (
                    <code className="value">{c.values[name]}</code>
                  )}
                </td>
                <td className="muted">{origin}</td>
                <td>
                  {props.mayWrite && origin.startsWith("app ") ? (
                    <ActionButton
                      label="Unset"
                      confirm={`Confirm unset ${name}`}
                      testId={`config-unset-${name}`}
                      onAct={async () => {
                        await client.post(`${props.path}/versions`, { unset: [name] });
                        props.done();
                      }}
                    />
                  ) : null}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}

/**
 * Set one key or one file: a new version of the namespace at `path` (an
 * app's, or a shared one's: shared-config.tsx); an app's is given to every
 * instance or, with a share (`gray`), to some first.
 */
export function ChangeForm(props: { path: string; gray: boolean; done(): void }) {
  const { client } = useSession();
  const [kind, setKind] = useState<"key" | "file">("key");
  const [name, setName] = useState("");
  const [value, setValue] = useState("");
  const [format, setFormat] = useState<ConfigFormat>("json");
  const [message, setMessage] = useState("");
  const [share, setShare] = useState("");
  const save = async () => {
    await client.post(`${props.path}/versions`, {
      ...(kind === "key" ? { set: { [name]: value } } : { files: { [name]: { format, content: value } } }),
      ...(message ? { message } : {}),
      ...(share ? { gray: { share: Number(share) } } : {}),
    });
    setName("");
    setValue("");
    setMessage("");
    setShare("");
    props.done();
  };
  return (
    <Section title="Change" id="config-change">
      <form className="stack" onSubmit={(e) => e.preventDefault()}>
        <div className="row">
          <label className="field inline">
            <span>Kind</span>
            <select value={kind} onChange={(e) => setKind(e.target.value as "key" | "file")}>
              <option value="key">key</option>
              <option value="file">file</option>
            </select>
          </label>
          <label className="field inline grow">
            <span>Name</span>
            <input
              value={name}
              onChange={(e) => {
                setName(e.target.value);
                // As the CLI: a file's format follows its name's extension until chosen otherwise.
                if (kind === "file") setFormat(formatOfName(e.target.value));
              }}
              data-testid="config-name"
            />
          </label>
          {kind === "file" ? (
            <label className="field inline">
              <span>Format</span>
              <select value={format} onChange={(e) => setFormat(e.target.value as ConfigFormat)}>
                {FORMATS.map((f) => (
                  <option key={f}>{f}</option>
                ))}
              </select>
            </label>
          ) : null}
        </div>
        {kind === "key" ? (
          <label className="field">
            <span>Value</span>
            <input value={value} onChange={(e) => setValue(e.target.value)} data-testid="config-value" />
          </label>
        ) : (
          <label className="field">
            <span>Content (checked in its format before anything is stored)</span>
            <textarea
              rows={8}
              value={value}
              onChange={(e) => setValue(e.target.value)}
              data-testid="config-content"
            />
          </label>
        )}
        <div className="row">
          <label className="field inline grow">
            <span>Why</span>
            <input
              value={message}
              onChange={(e) => setMessage(e.target.value)}
              data-testid="config-message"
            />
          </label>
          {props.gray ? (
            <label className="field inline">
              <span>Gray to %</span>
              <input
                type="number"
                min={1}
                max={100}
                size={4}
                value={share}
                placeholder="all"
                onChange={(e) => setShare(e.target.value)}
                title="Give the new version to this share of instances first; empty: every instance"
              />
            </label>
          ) : null}
          <ActionButton label="Save" kind="primary" disabled={!name} testId="config-save" onAct={save} />
        </div>
      </form>
    </Section>
  );
}

function Applied({ app, rows }: { app: string; rows: InstanceConfigStatus[] }) {
  if (rows.length === 0) return <p className="muted">No instances.</p>;
  return (
    <div className="scroll">
      <table data-testid="config-applied">
        <TableHead columns={["Instance", "Service", "Node", "Should have", "Applied"]} />
        <tbody>
          {rows.map((r) => (
            <tr key={r.id} data-testid={`config-instance-${r.id}`}>
              <th scope="row">
                <Link to={`/apps/${encodeURIComponent(app)}/instances/${encodeURIComponent(r.id)}`}>
                  {r.id}
                </Link>
              </th>
              <td>{r.service}</td>
              <td>{r.node ?? "—"}</td>
              <td>
                v{r.target} {r.gray ? <span className="badge busy">gray</span> : null}
              </td>
              <td>
                {r.applied === undefined ? <span className="muted">not reported yet</span> : `v${r.applied}`}{" "}
                {r.behind ? (
                  <span className="badge busy">behind</span>
                ) : r.appliedAt ? (
                  <span className="muted small">{ago(r.appliedAt)}</span>
                ) : null}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
