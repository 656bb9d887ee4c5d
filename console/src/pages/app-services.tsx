// The App page's first tab: each service with its instances (live: state,
// node, restarts, why pending), scale and restart for those who may, the
// routes, and the names of env variables and secrets (never their values).

import { useState } from "react";
import type { Instance } from "../../../src/model/objects.ts";
import type { RouteView } from "../api-types.ts";
import { ActionButton, ErrorBox, Section, StateBadge } from "../components/ui.tsx";
import { ago, bytes, cores } from "../format.ts";
import { Link } from "../router.tsx";
import { useSession } from "../session.tsx";
import { usePoll } from "../use-poll.ts";
import type { AppDetail } from "./app.tsx";
import { SecretsSection } from "./app-secrets.tsx";

export function ServicesTab({ detail, reload }: { detail: AppDetail; reload(): void }) {
  const { client, can } = useSession();
  const name = detail.app.name;
  const path = `/apps/${encodeURIComponent(name)}`;
  const instances = usePoll(
    (signal) => client.get<{ items: Instance[] }>(`${path}/instances`, { signal }),
    2000,
    [client, name],
  );
  const routes = usePoll(
    (signal) => client.get<{ items: RouteView[] }>(`${path}/routes`, { signal }),
    15_000,
    [client, name],
  );
  const live = (instances.data?.items ?? []).filter((i) => i.desired === "running" || i.state !== "stopped");

  return (
    <>
      {detail.services.length === 0 ? <p className="muted">No services: deploy a release first.</p> : null}
      {detail.services.map((s) => {
        const mine = live.filter((i) => i.service === s.name);
        const running = mine.filter((i) => i.state === "running").length;
        return (
          <Section
            key={s.name}
            id={`svc-${s.name}`}
            title={`${s.name}`}
            actions={
              <span className="row">
                <StateBadge state={s.state} />
                <span data-testid={`running-${s.name}`}>
                  {running}/{s.instances} running
                </span>
                {can("apps:write") ? (
                  <>
                    <ScaleControl
                      service={s.name}
                      current={s.instances}
                      onScale={async (n) => {
                        await client.post(`${path}/scale`, { services: { [s.name]: n } });
                        reload();
                        instances.reload();
                      }}
                    />
                    <ActionButton
                      label="Restart"
                      title="Replace every instance, the new ones serving before the old ones go (pets restart in place)"
                      onAct={async () => {
                        await client.post(`${path}/restart`, { services: [s.name] });
                        reload();
                        instances.reload();
                      }}
                      testId={`restart-${s.name}`}
                    />
                  </>
                ) : null}
              </span>
            }
          >
            {s.message ? <p className="muted">{s.message}</p> : null}
            <p className="small muted">
              release v{s.release} · {s.spec.mode ?? "cattle"} · {cores(s.spec.resources?.cpu)},{" "}
              {bytes(s.spec.resources?.memory)} each · <code>{s.spec.command ?? "(image)"}</code>
            </p>
            <div className="scroll">
              <table>
                <thead>
                  <tr>
                    <th scope="col">Instance</th>
                    <th scope="col">State</th>
                    <th scope="col">Release</th>
                    <th scope="col">Node</th>
                    <th scope="col">Restarts</th>
                    <th scope="col">Started</th>
                    <th scope="col">Why</th>
                  </tr>
                </thead>
                <tbody>
                  {mine.map((i) => (
                    <tr key={i.id} data-testid="instance-row">
                      <th scope="row">
                        <Link to={`${path}/instances/${i.id}`}>{i.id}</Link>
                      </th>
                      <td>
                        <StateBadge state={i.state} />
                      </td>
                      <td>v{i.release}</td>
                      <td>{i.node ?? "—"}</td>
                      <td>{i.restarts}</td>
                      <td>{ago(i.startedAt)}</td>
                      <td className="why">{i.state === "running" ? "" : i.message || i.reason}</td>
                    </tr>
                  ))}
                  {mine.length === 0 ? (
                    <tr>
                      <td colSpan={7} className="muted">
                        No instances.
                      </td>
                    </tr>
                  ) : null}
                </tbody>
              </table>
            </div>
            <h3>Env</h3>
            <p className="names">
              {Object.keys(s.spec.env ?? {}).length === 0
                ? "none"
                : Object.keys(s.spec.env ?? {})
                    .sort()
                    .map((k) => <code key={k}>{k}</code>)}
            </p>
          </Section>
        );
      })}
      <ErrorBox error={instances.error} />
      <div className="columns">
        <Section title="Routes" id="routes">
          <ErrorBox error={routes.error} />
          <ul className="list">
            {(routes.data?.items ?? []).map((r) => (
              <li key={`${r.source}-${r.route.name ?? ""}-${r.route.host ?? ""}${r.route.path ?? ""}`}>
                <code>
                  {r.route.host ?? "*"}
                  {r.route.path ?? "/"}
                </code>{" "}
                → {r.service} <span className="muted">({r.source})</span>
              </li>
            ))}
            {routes.data && routes.data.items.length === 0 ? <li className="muted">No routes.</li> : null}
          </ul>
          <p className="small">
            <Link to={`${path}/traffic`}>Their policies, and each service's traffic policies</Link>
          </p>
        </Section>
        <SecretsSection app={name} />
      </div>
    </>
  );
}

function ScaleControl(props: { service: string; current: number; onScale(n: number): Promise<void> }) {
  const [value, setValue] = useState(String(props.current));
  const n = Number(value);
  const valid = value !== "" && Number.isInteger(n) && n >= 0 && n <= 1000;
  return (
    <span className="scale">
      <label className="field inline">
        <span>Instances</span>
        <input
          type="number"
          min={0}
          max={1000}
          value={value}
          onChange={(e) => setValue(e.target.value)}
          aria-label={`instances of ${props.service}`}
          data-testid={`scale-input-${props.service}`}
        />
      </label>
      <ActionButton
        label="Scale"
        kind="primary"
        disabled={!valid || n === props.current}
        onAct={() => props.onScale(n)}
        testId={`scale-${props.service}`}
      />
    </span>
  );
}
