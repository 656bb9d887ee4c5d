// The App page's traffic: each route with the policies the gateway applies
// to it (rate limit, balancing, timeouts, auth, CORS, split, mirror, fallback),
// where it comes from (herd.yaml, or the API: removable here); and per
// service its traffic policies as the gateway applies them (herd.yaml's with
// the API's overrides on top, docs/live-config.md): a deployer degrades a
// service to its routes' fallbacks and back, sets or lifts its concurrency
// limit and criticality, turns its breaker or outlier ejection off, and sends
// any overridden policy back to herd.yaml's.
//
//   GET /apps/:app/routes · DELETE /apps/:app/routes/:name · PATCH /apps/:app/services/:service/traffic

import { useState } from "react";
import { effectiveTraffic } from "../../../src/model/gateway-view.ts";
import type { Route } from "../../../src/model/service-spec.ts";
import type { RouteView } from "../api-types.ts";
import { ActionButton, ErrorBox, Loading, Section, TableHead } from "../components/ui.tsx";
import { useSession } from "../session.tsx";
import { POLICY_TEXT, routePolicies } from "../traffic-text.ts";
import { usePoll } from "../use-poll.ts";
import type { AppDetail } from "./app.tsx";

type ServiceView = AppDetail["services"][number];
type Criticality = NonNullable<ServiceView["spec"]["criticality"]>;

export function TrafficTab({ detail, reload }: { detail: AppDetail; reload(): void }) {
  const { client, can } = useSession();
  const path = `/apps/${encodeURIComponent(detail.app.name)}`;
  const routes = usePoll(
    (signal) => client.get<{ items: (RouteView & { name?: string })[] }>(`${path}/routes`, { signal }),
    5000,
    [client, path],
  );
  const mayWrite = can("apps:write");
  const items = routes.data?.items ?? [];
  return (
    <>
      <Section title="Routes" id="traffic-routes">
        <ErrorBox error={routes.error} />
        {!routes.data ? (
          <Loading what="routes" />
        ) : items.length === 0 ? (
          <p className="muted">No routes: the app is not reachable through the gateway.</p>
        ) : (
          <div className="scroll">
            <table data-testid="routes">
              <TableHead columns={["Route", "Service", "Policies", "From"]} actions />
              <tbody>
                {items.map((r) => {
                  const where = `${r.route.host ?? "*"}${r.route.path ?? "/"}`;
                  return (
                    <tr key={`${r.source}-${r.name ?? ""}-${where}`} data-testid={`route-${r.name ?? where}`}>
                      <th scope="row">
                        <code>{where}</code>
                      </th>
                      <td>{r.service}</td>
                      <td>
                        <span className="names">
                          {routePolicies(r.route as Partial<Route>).map((p) => (
                            <span key={p} className="badge plain">
                              {p}
                            </span>
                          ))}
                        </span>
                      </td>
                      <td className="muted">{r.source === "api" ? `API ${r.name}` : r.source}</td>
                      <td>
                        {mayWrite && r.source === "api" && r.name ? (
                          <ActionButton
                            label="Delete"
                            kind="danger"
                            confirm={`Confirm delete ${r.name}`}
                            testId={`route-delete-${r.name}`}
                            onAct={async () => {
                              await client.call(`${path}/routes/${encodeURIComponent(r.name!)}`, {
                                method: "DELETE",
                              });
                              routes.reload();
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
        )}
        <p className="small muted">
          Routes are set in herd.yaml, or live with <code>herd routes set</code> (docs/live-config.md).
        </p>
      </Section>
      {detail.services.map((s) => (
        <ServiceTraffic
          key={s.name}
          service={s}
          path={`${path}/services/${encodeURIComponent(s.name)}/traffic`}
          hasFallback={items.some((r) => r.service === s.name && (r.route as Partial<Route>).fallback)}
          mayWrite={mayWrite}
          done={reload}
        />
      ))}
    </>
  );
}

function ServiceTraffic(props: {
  service: ServiceView;
  path: string;
  hasFallback: boolean;
  mayWrite: boolean;
  done(): void;
}) {
  const { client } = useSession();
  const s = props.service;
  const effective = effectiveTraffic(s);
  const overridden = new Set(Object.keys(s.traffic ?? {}));
  const [limit, setLimit] = useState("");
  const [criticality, setCriticality] = useState<Criticality>(effective.criticality ?? "normal");
  const patch = (body: Record<string, unknown>) => async () => {
    await client.call(props.path, { method: "PATCH", body });
    props.done();
  };
  const row = (field: keyof typeof POLICY_TEXT, value: string) => (
    <tr key={field} data-testid={`traffic-${s.name}-${field}`}>
      <th scope="row">{field}</th>
      <td>
        {value} {overridden.has(field) ? <span className="badge busy">set live</span> : null}
      </td>
      <td>
        {props.mayWrite ? (
          <span className="action">
            {overridden.has(field) ? (
              <ActionButton
                label="Back to herd.yaml"
                testId={`traffic-${s.name}-${field}-reset`}
                onAct={patch({ [field]: null })}
              />
            ) : null}
            {(field === "breaker" || field === "outlier" || field === "concurrency") &&
            effective[field] !== undefined ? (
              <ActionButton
                label="Off"
                confirm={`Confirm ${field} off`}
                testId={`traffic-${s.name}-${field}-off`}
                onAct={patch({ [field]: false })}
              />
            ) : null}
          </span>
        ) : null}
      </td>
    </tr>
  );
  const degraded = effective.fallback === true;
  return (
    <Section
      title={`Traffic policies: ${s.name}`}
      id={`traffic-${s.name}`}
      actions={
        <span className="row">
          {degraded ? (
            <span className="badge bad" data-testid={`degraded-${s.name}`}>
              degraded: its routes answer their fallback
            </span>
          ) : null}
          {props.mayWrite && (degraded || props.hasFallback) ? (
            <ActionButton
              label={degraded ? "Restore" : "Degrade"}
              kind={degraded ? "primary" : "danger"}
              confirm={degraded ? undefined : `Confirm: ${s.name}'s routes answer their fallback`}
              testId={`degrade-${s.name}`}
              onAct={patch({ fallback: degraded ? null : true })}
            />
          ) : null}
        </span>
      }
    >
      <div className="scroll">
        <table>
          <TableHead columns={["Policy", "As the gateway applies it"]} actions />
          <tbody>
            {row("breaker", POLICY_TEXT.breaker(effective.breaker))}
            {row("outlier", POLICY_TEXT.outlier(effective.outlier))}
            {row("criticality", POLICY_TEXT.criticality(effective.criticality))}
            {row("concurrency", POLICY_TEXT.concurrency(effective.concurrency))}
          </tbody>
        </table>
      </div>
      {props.mayWrite ? (
        <div className="row">
          <label className="field inline">
            <span>Concurrency limit</span>
            <input
              type="number"
              min={1}
              size={6}
              value={limit}
              onChange={(e) => setLimit(e.target.value)}
              data-testid={`traffic-${s.name}-limit`}
            />
          </label>
          <ActionButton
            label="Set limit"
            disabled={!(Number.isInteger(Number(limit)) && Number(limit) >= 1)}
            testId={`traffic-${s.name}-limit-set`}
            onAct={async () => {
              await patch({ concurrency: Number(limit) })();
              setLimit("");
            }}
          />
          <label className="field inline">
            <span>Criticality</span>
            <select
              value={criticality}
              onChange={(e) => setCriticality(e.target.value as Criticality)}
              data-testid={`traffic-${s.name}-criticality-select`}
            >
              <option>critical</option>
              <option>normal</option>
              <option>low</option>
            </select>
          </label>
          <ActionButton
            label="Set criticality"
            disabled={criticality === (effective.criticality ?? "normal")}
            testId={`traffic-${s.name}-criticality-set`}
            onAct={patch({ criticality })}
          />
        </div>
      ) : null}
    </Section>
  );
}
