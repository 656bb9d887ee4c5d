// Overview: the tenant's apps (state, release, instances running of desired,
// request rate, error ratio and p99 over the last half hour), the alerts that
// fire, and how full the nodes are.
//
//   GET /apps, /instances (every 5 s) · PromQL query_range (every 30 s) · /alerts · /capacity

import type { App, Instance, Service } from "../../../src/model/objects.ts";
import type { ActiveAlertView, Capacity } from "../api-types.ts";
import { Sparkline } from "../components/sparkline.tsx";
import { ErrorBox, Loading, Meter, Section, StateBadge } from "../components/ui.tsx";
import { ago, bytes, cores, figure } from "../format.ts";
import { last, redByApp } from "../metrics.ts";
import { Link } from "../router.tsx";
import { useSession } from "../session.tsx";
import { appState } from "../state.ts";
import { usePoll } from "../use-poll.ts";

type AppWithServices = App & { services: Service[] };

export function OverviewPage() {
  const { client, tenant, can } = useSession();
  const apps = usePoll((signal) => client.get<{ items: AppWithServices[] }>("/apps", { signal }), 5000, [
    client,
  ]);
  const instances = usePoll((signal) => client.get<{ items: Instance[] }>("/instances", { signal }), 5000, [
    client,
  ]);
  const mayTelemetry = can("telemetry:read");
  const red = usePoll(
    (signal) => (mayTelemetry ? redByApp(client, tenant, signal) : Promise.resolve(new Map())),
    30_000,
    [client],
  );
  const alerts = usePoll(
    (signal) =>
      mayTelemetry
        ? client.get<{ items: ActiveAlertView[] }>("/alerts", { signal })
        : Promise.resolve({ items: [] }),
    10_000,
    [client],
  );
  const capacity = usePoll((signal) => client.get<Capacity>("/capacity", { signal }), 10_000, [client]);

  const running = new Map<string, number>();
  for (const i of instances.data?.items ?? []) {
    if (i.desired === "running" && i.state === "running") running.set(i.app, (running.get(i.app) ?? 0) + 1);
  }
  const firing = (alerts.data?.items ?? []).filter((a) => a.state === "firing");

  return (
    <div className="page">
      <h1>Overview</h1>
      <Section title="Apps" id="apps">
        <ErrorBox error={apps.error} />
        {!apps.data ? (
          <Loading what="apps" />
        ) : apps.data.items.length === 0 ? (
          <p className="muted">
            No apps in tenant {tenant} yet. Deploy one with <code>herd deploy</code> or from an app's Deploy
            tab.
          </p>
        ) : (
          <div className="scroll">
            <table className="apps">
              <thead>
                <tr>
                  <th scope="col">App</th>
                  <th scope="col">State</th>
                  <th scope="col">Release</th>
                  <th scope="col">Instances</th>
                  <th scope="col">Requests</th>
                  <th scope="col">Errors</th>
                  <th scope="col">p99</th>
                </tr>
              </thead>
              <tbody>
                {apps.data.items.map((a) => {
                  const desired = a.services.reduce((n, s) => n + s.instances, 0);
                  const r = red.data?.get(a.name);
                  return (
                    <tr key={a.name} data-testid={`app-row-${a.name}`}>
                      <th scope="row">
                        <Link to={`/apps/${encodeURIComponent(a.name)}`}>{a.name}</Link>
                      </th>
                      <td>
                        <StateBadge state={appState(a, a.services)} />
                      </td>
                      <td>{a.release === null ? "—" : `v${a.release}`}</td>
                      <td data-testid="instance-count">
                        {instances.data ? (running.get(a.name) ?? 0) : "…"}/{desired}
                      </td>
                      <td>
                        <div className="spark">
                          <Sparkline points={r?.rate} label={`${a.name} request rate`} />
                          <span>{figure(last(r?.rate), "rps")}</span>
                        </div>
                      </td>
                      <td>
                        <div className="spark">
                          <Sparkline points={r?.errors} label={`${a.name} error ratio`} color="var(--bad)" />
                          <span>{figure(last(r?.errors), "pct")}</span>
                        </div>
                      </td>
                      <td>
                        <div className="spark">
                          <Sparkline points={r?.p99} label={`${a.name} p99 latency`} color="var(--busy)" />
                          <span>{figure(last(r?.p99), "s")}</span>
                        </div>
                      </td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
        )}
        <ErrorBox error={red.error} />
      </Section>

      <div className="columns">
        <Section title={`Firing alerts (${firing.length})`} id="alerts">
          <ErrorBox error={alerts.error} />
          {!mayTelemetry ? (
            <p className="muted">Your role cannot read alerts.</p>
          ) : firing.length === 0 ? (
            <p className="muted">Nothing fires.</p>
          ) : (
            <ul className="list">
              {firing.map((a) => (
                <li key={a.fingerprint}>
                  <span className={`badge ${a.severity === "critical" ? "bad" : "busy"}`}>{a.severity}</span>{" "}
                  <strong>{a.rule}</strong>
                  {a.app ? (
                    <>
                      {" "}
                      on <Link to={`/apps/${a.app}`}>{a.app}</Link>
                    </>
                  ) : null}{" "}
                  <span className="muted">
                    {a.annotations.summary ?? ""} · since {ago(a.firingSince ?? a.since)}
                    {a.silencedBy ? " · silenced" : ""}
                  </span>
                </li>
              ))}
            </ul>
          )}
        </Section>

        <Section title="Node capacity" id="nodes">
          <ErrorBox error={capacity.error} />
          {!capacity.data ? (
            <Loading what="nodes" />
          ) : (
            <div className="scroll">
              <table className="nodes">
                <thead>
                  <tr>
                    <th scope="col">Node</th>
                    <th scope="col">CPU requested</th>
                    <th scope="col">Memory requested</th>
                    <th scope="col">Instances</th>
                  </tr>
                </thead>
                <tbody>
                  {capacity.data.nodes.map((n) => (
                    <tr key={n.name}>
                      <th scope="row">
                        {n.name} <StateBadge state={n.schedulable ? n.state : `${n.state}, cordoned`} />
                      </th>
                      <td>
                        <Meter
                          used={n.requested.cpu}
                          total={n.allocatable.cpu}
                          label={`${n.name} CPU requested`}
                        />
                        <span className="small">
                          {cores(n.requested.cpu)} of {cores(n.allocatable.cpu)} · used {cores(n.used?.cpu)}
                        </span>
                      </td>
                      <td>
                        <Meter
                          used={n.requested.memory}
                          total={n.allocatable.memory}
                          label={`${n.name} memory requested`}
                        />
                        <span className="small">
                          {bytes(n.requested.memory)} of {bytes(n.allocatable.memory)} · used{" "}
                          {bytes(n.used?.memory)}
                        </span>
                      </td>
                      <td>{n.instances}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </Section>
      </div>
    </div>
  );
}
