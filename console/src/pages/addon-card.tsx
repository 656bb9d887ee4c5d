// One add-on on the Add-ons page, as `herd addons info` and the commands on
// one add-on: its state and plan; the apps bound to it with the variables
// they get; its backups. A deployer binds it to another app, detaches one,
// rotates credentials, moves it to another plan, sets or stops its backup
// schedule, backs it up, restores or forgets a backup, and destroys it
// (confirmed; a final backup is kept unless asked not to). Each action that
// rolls out a release links its deploy.
//
//   POST /addons/:addon/attach|detach|rotate|backups, PATCH /addons/:addon,
//   PUT|DELETE /addons/:addon/backup-policy, DELETE /addons/:addon?confirm=NAME,
//   POST …/backups/:id/restore, DELETE …/backups/:id (apps:write)   (docs/addons.md)

import { type ReactNode, useState } from "react";
import type { PlanView } from "../../../src/addons/brokers.ts";
import type { Addon, AddonBackup, AddonInfo as AddonView } from "../../../src/model/addon.ts";
import { ActionButton, Section, StateBadge, TableHead } from "../components/ui.tsx";
import { ago, bytes } from "../format.ts";
import { parametersOf } from "../json-parameters.ts";
import { Link } from "../router.tsx";
import { useSession } from "../session.tsx";

/** What a backup holds: the databases (postgres), the keyspace (redis), and why it was taken. */
export function contentOf(b: AddonBackup): string {
  const what = b.format === "rdb" ? "the keyspace" : b.databases.join(", ") || "no database";
  return b.reason === "detach" && b.app ? `${what} (${b.app}, before its drop)` : what;
}

/** The outcome of the last action, with the deploys it started. */
interface Outcome {
  text: string;
  deploys: { app: string; id: string }[];
}

function DeployLinks({ deploys }: { deploys: Outcome["deploys"] }) {
  return deploys.map((d) => (
    <span key={d.id}>
      {" "}
      <Link to={`/apps/${encodeURIComponent(d.app)}/deploys/${encodeURIComponent(d.id)}`}>
        deploy {d.id} ({d.app})
      </Link>
    </span>
  ));
}

const varsOf = (b: { var: string; vars?: string[] }): string => (b.vars ?? [b.var]).join(", ");

export function AddonCard(props: {
  addon: AddonView;
  plans: PlanView[];
  apps: string[];
  mayWrite: boolean;
  reload: () => void;
}) {
  const { client } = useSession();
  const a = props.addon;
  const base = `/addons/${encodeURIComponent(a.name)}`;
  const [outcome, setOutcome] = useState<Outcome>();
  const act = (run: () => Promise<Outcome>) => async () => {
    setOutcome(await run());
    props.reload();
  };
  const bound = new Set(a.bindings.map((b) => b.app));
  const rotate = (app?: string) =>
    act(async () => {
      const r = await client.post<{ rotated: { app: string; deploy?: string }[] }>(
        `${base}/rotate`,
        app ? { app } : {},
      );
      return {
        text:
          r.rotated.length === 0
            ? `${a.name} has no bound apps.`
            : `New credentials for ${r.rotated.map((x) => x.app).join(", ")}; the old ones are revoked once they have rolled out.`,
        deploys: r.rotated.flatMap((x) => (x.deploy ? [{ app: x.app, id: x.deploy }] : [])),
      };
    });
  return (
    <Section
      title={a.name}
      id={`addon-${a.name}`}
      actions={
        props.mayWrite && !a.broker ? (
          <ActionButton
            label="Back up now"
            kind="primary"
            testId={`backup-now-${a.name}`}
            onAct={act(async () => {
              const b = await client.post<AddonBackup>(`${base}/backups`, {});
              return { text: `Backup ${b.id}: ${contentOf(b)}, ${bytes(b.size)}.`, deploys: [] };
            })}
          />
        ) : undefined
      }
    >
      <p data-testid={`addon-state-${a.name}`}>
        <StateBadge state={a.state} />{" "}
        <span className="muted small">
          {a.kind}
          {a.broker ? ` (broker ${a.broker.name}${a.broker.message ? `: ${a.broker.message}` : ""})` : ""} ·
          plan {a.plan}
          {a.planChange ? ` (moving from ${a.planChange.from})` : ""} · made {ago(a.createdAt)}
          {a.node ? ` · on ${a.node}` : ""}
          {a.endpoint ? ` · at ${a.endpoint}` : ""}
          {a.backupPolicy ? ` · backups ${a.backupPolicy.schedule}, keeping ${a.backupPolicy.keep}` : ""}
        </span>
        {a.broker?.dashboardUrl ? (
          <>
            {" "}
            <a href={a.broker.dashboardUrl} target="_blank" rel="noreferrer">
              dashboard
            </a>
          </>
        ) : null}
      </p>
      {outcome ? (
        <p className="small notice" data-testid={`addon-outcome-${a.name}`}>
          {outcome.text}
          <DeployLinks deploys={outcome.deploys} />
        </p>
      ) : null}
      {a.bindings.length === 0 ? (
        <p className="small muted">Bound to no app.</p>
      ) : (
        <div className="scroll">
          <table data-testid={`bindings-${a.name}`}>
            <TableHead
              columns={a.broker ? ["App", "Gets"] : ["App", "Gets", "Database", "Rotated"]}
              actions={props.mayWrite}
            />
            <tbody>
              {a.bindings.map((b) => (
                <tr key={b.app} data-testid={`binding-${a.name}-${b.app}`}>
                  <th scope="row">
                    <Link to={`/apps/${encodeURIComponent(b.app)}`}>{b.app}</Link>
                  </th>
                  <td>
                    <code>{varsOf(b)}</code>
                  </td>
                  {a.broker ? null : (
                    <>
                      <td>{b.database}</td>
                      <td>{b.rotation ? `${b.rotation}×` : "never"}</td>
                    </>
                  )}
                  {props.mayWrite ? (
                    <td>
                      <ActionButton
                        label="Rotate"
                        confirm={`Confirm new credentials for ${b.app}`}
                        testId={`rotate-${a.name}-${b.app}`}
                        onAct={rotate(b.app)}
                      />
                      <ActionButton
                        label="Detach"
                        kind="danger"
                        confirm={
                          a.kind === "postgres"
                            ? `Confirm detach ${b.app} (its database is dropped after a backup)`
                            : `Confirm detach ${b.app}`
                        }
                        testId={`detach-${a.name}-${b.app}`}
                        onAct={act(async () => {
                          const r = await client.post<{ deploy?: string; backupFirst?: boolean }>(
                            `${base}/detach`,
                            { app: b.app },
                          );
                          return {
                            text: `${b.app} no longer gets ${varsOf(b)}${r.deploy ? "; its new release rolls out" : ""}${r.backupFirst ? "; its database is backed up, then dropped" : ""}.`,
                            deploys: r.deploy ? [{ app: b.app, id: r.deploy }] : [],
                          };
                        })}
                      />
                    </td>
                  ) : null}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {(a.detached ?? []).map((d) => (
        <p key={`${d.app}/${d.database}`} className="small muted">
          Detached from {d.app}: its database {d.database} is dropped
          {d.withoutBackup ? " without a backup" : ""} once its release has rolled out.
        </p>
      ))}
      {props.mayWrite ? (
        <>
          <Bind
            addon={a}
            plans={props.plans}
            apps={props.apps.filter((x) => !bound.has(x))}
            onBind={(app, v, parameters) =>
              act(async () => {
                const r = await client.post<{
                  binding: { app: string; var: string; vars?: string[] };
                  deploy?: string;
                }>(`${base}/attach`, {
                  app,
                  ...(v ? { var: v } : {}),
                  ...(parameters ? { parameters } : {}),
                });
                return {
                  text: `${app} gets ${varsOf(r.binding)}; its new release rolls out.`,
                  deploys: r.deploy ? [{ app, id: r.deploy }] : [],
                };
              })()
            }
          />
          <Plan
            addon={a}
            plans={props.plans}
            onPlan={(plan) =>
              act(async () => {
                const r = await client.call<{ addon: Addon; deploy?: string; pending?: boolean }>(base, {
                  method: "PATCH",
                  body: { plan },
                });
                return {
                  text: r.pending
                    ? `${a.name} is moving to plan ${plan} at its broker.`
                    : `${a.name} is on plan ${r.addon.plan}${r.deploy ? ": its server restarts in place, its data kept" : ""}.`,
                  deploys: r.deploy ? [{ app: a.name, id: r.deploy }] : [],
                };
              })()
            }
          />
          {a.broker ? null : <Schedule addon={a} base={base} done={props.reload} />}
        </>
      ) : null}
      <Backups addon={a} mayWrite={props.mayWrite} done={props.reload} />
      {props.mayWrite ? <Destroy addon={a} base={base} done={props.reload} /> : null}
    </Section>
  );
}

function Row(props: { children: ReactNode }) {
  return (
    <form className="row" onSubmit={(e) => e.preventDefault()}>
      {props.children}
    </form>
  );
}

function Bind(props: {
  addon: AddonView;
  plans: PlanView[];
  apps: string[];
  onBind: (app: string, as: string, parameters?: Record<string, unknown>) => Promise<void>;
}) {
  const [app, setApp] = useState("");
  const [as, setAs] = useState("");
  const [parameters, setParameters] = useState("");
  const a = props.addon;
  const takesParameters = props.plans.some((p) => p.kind === a.kind && p.plan === a.plan && p.bindParameters);
  if (props.apps.length === 0) return null;
  return (
    <Row>
      <label className="field inline">
        <span>Bind to</span>
        <select value={app} onChange={(e) => setApp(e.target.value)} data-testid={`bind-app-${a.name}`}>
          <option value="">choose an app</option>
          {props.apps.map((x) => (
            <option key={x}>{x}</option>
          ))}
        </select>
      </label>
      {a.broker ? null : (
        <label className="field inline">
          <span>As</span>
          <input
            value={as}
            placeholder={a.kind === "redis" ? "REDIS_URL" : "DATABASE_URL"}
            onChange={(e) => setAs(e.target.value.toUpperCase())}
            data-testid={`bind-var-${a.name}`}
          />
        </label>
      )}
      {takesParameters ? (
        <label className="field inline grow">
          <span>Parameters (JSON)</span>
          <input value={parameters} placeholder="{}" onChange={(e) => setParameters(e.target.value)} />
        </label>
      ) : null}
      <ActionButton
        label="Bind"
        disabled={!app}
        testId={`bind-${a.name}`}
        onAct={async () => {
          await props.onBind(app, as, parametersOf(parameters));
          setApp("");
          setAs("");
          setParameters("");
        }}
      />
    </Row>
  );
}

function Plan(props: { addon: AddonView; plans: PlanView[]; onPlan: (plan: string) => Promise<void> }) {
  const a = props.addon;
  const others = props.plans.filter((p) => p.kind === a.kind && p.plan !== a.plan && p.updateable);
  const [plan, setPlan] = useState("");
  if (others.length === 0) return null;
  return (
    <Row>
      <label className="field inline">
        <span>Move to plan</span>
        <select value={plan} onChange={(e) => setPlan(e.target.value)} data-testid={`plan-${a.name}`}>
          <option value="">choose a plan</option>
          {others.map((p) => (
            <option key={`${p.source}/${p.plan}`} value={p.plan}>
              {p.plan} ({p.description})
            </option>
          ))}
        </select>
      </label>
      <ActionButton
        label="Change plan"
        disabled={!plan}
        confirm={a.broker ? undefined : `Confirm plan ${plan} (the server restarts, its data kept)`}
        testId={`change-plan-${a.name}`}
        onAct={async () => {
          await props.onPlan(plan);
          setPlan("");
        }}
      />
    </Row>
  );
}

function Schedule(props: { addon: AddonView; base: string; done: () => void }) {
  const { client } = useSession();
  const a = props.addon;
  const [schedule, setSchedule] = useState("");
  const [keep, setKeep] = useState("");
  return (
    <Row>
      <label className="field inline">
        <span>Back up on (cron, UTC)</span>
        <input
          value={schedule}
          placeholder={a.backupPolicy?.schedule ?? "0 3 * * *"}
          onChange={(e) => setSchedule(e.target.value)}
          data-testid={`schedule-${a.name}`}
        />
      </label>
      <label className="field inline">
        <span>Keep</span>
        <input
          type="number"
          min={1}
          max={100}
          size={4}
          value={keep}
          placeholder={String(a.backupPolicy?.keep ?? 7)}
          onChange={(e) => setKeep(e.target.value)}
        />
      </label>
      <ActionButton
        label="Set schedule"
        disabled={!schedule}
        testId={`set-schedule-${a.name}`}
        onAct={async () => {
          await client.call(`${props.base}/backup-policy`, {
            method: "PUT",
            body: { schedule, ...(keep ? { keep: Number(keep) } : {}) },
          });
          setSchedule("");
          setKeep("");
          props.done();
        }}
      />
      {a.backupPolicy ? (
        <ActionButton
          label="Stop schedule"
          testId={`stop-schedule-${a.name}`}
          onAct={async () => {
            await client.call(`${props.base}/backup-policy`, { method: "DELETE" });
            props.done();
          }}
        />
      ) : null}
    </Row>
  );
}

function Backups(props: { addon: AddonView; mayWrite: boolean; done: () => void }) {
  const { client } = useSession();
  const base = `/addons/${encodeURIComponent(props.addon.name)}/backups`;
  const backups = [...(props.addon.backups ?? [])].reverse();
  if (backups.length === 0) return props.addon.broker ? null : <p className="small muted">No backups yet.</p>;
  return (
    <div className="scroll">
      <table data-testid={`backups-${props.addon.name}`}>
        <TableHead columns={["Backup", "Taken", "Why", "Holds", "Size"]} actions={props.mayWrite} />
        <tbody>
          {backups.map((b) => (
            <tr key={b.id} data-testid={`backup-${b.id}`}>
              <th scope="row">{b.id}</th>
              <td title={b.createdAt}>{ago(b.createdAt)}</td>
              <td>{b.reason ?? "manual"}</td>
              <td>{contentOf(b)}</td>
              <td>{bytes(b.size)}</td>
              {props.mayWrite ? (
                <td>
                  <ActionButton
                    label="Restore"
                    kind="danger"
                    confirm={`Confirm restore of ${b.id} (the data goes back to then)`}
                    testId={`restore-${b.id}`}
                    onAct={async () => {
                      await client.post(`${base}/${encodeURIComponent(b.id)}/restore`, {});
                      props.done();
                    }}
                  />
                  <ActionButton
                    label="Delete"
                    confirm={`Confirm delete ${b.id}`}
                    testId={`delete-backup-${b.id}`}
                    onAct={async () => {
                      await client.call(`${base}/${encodeURIComponent(b.id)}`, { method: "DELETE" });
                      props.done();
                    }}
                  />
                </td>
              ) : null}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function Destroy(props: { addon: AddonView; base: string; done: () => void }) {
  const { client } = useSession();
  const a = props.addon;
  const [withoutBackup, setWithoutBackup] = useState(false);
  return (
    <Row>
      <ActionButton
        label="Destroy"
        kind="danger"
        confirm={
          a.broker
            ? `Confirm destroy ${a.name} (its broker deletes it and its data)`
            : withoutBackup
              ? `Confirm destroy ${a.name} and its data, with no backup`
              : `Confirm destroy ${a.name} (a final backup is kept)`
        }
        testId={`destroy-${a.name}`}
        onAct={async () => {
          await client.call(props.base, {
            method: "DELETE",
            query: { confirm: a.name, ...(withoutBackup ? { withoutBackup: true } : {}) },
          });
          props.done();
        }}
      />
      {a.broker ? null : (
        <label className="small">
          <input
            type="checkbox"
            checked={withoutBackup}
            onChange={(e) => setWithoutBackup(e.target.checked)}
            data-testid={`without-backup-${a.name}`}
          />{" "}
          without a final backup (a server that does not run cannot be backed up)
        </label>
      )}
    </Row>
  );
}
