// The Add-ons page's form for a new add-on, as `herd addons create`: a kind
// and plan from the catalog (herd's postgres and redis, then each broker's
// services), an optional name, an app to bind it to and the variable that
// carries its URL, a backup schedule, and a broker's parameters as JSON.
// The API checks everything again; its refusal is shown under the button.
//
//   GET /addon-plans (viewer) · POST /addons (apps:write)   (docs/addons.md)

import { useState } from "react";
import type { PlanView } from "../../../src/addons/brokers.ts";
import { ActionButton, Section } from "../components/ui.tsx";
import { parametersOf } from "../json-parameters.ts";
import { useSession } from "../session.tsx";

export interface Created {
  name: string;
  app?: string;
  vars?: string[];
}

export function NewAddon(props: { plans: PlanView[]; apps: string[]; done: (made: Created) => void }) {
  const { client } = useSession();
  const kinds = [...new Set(props.plans.map((p) => p.kind))];
  const [kind, setKind] = useState(kinds[0] ?? "postgres");
  const plans = props.plans.filter((p) => p.kind === kind);
  const [plan, setPlan] = useState("");
  const [name, setName] = useState("");
  const [app, setApp] = useState("");
  const [as, setAs] = useState("");
  const [schedule, setSchedule] = useState("");
  const [parameters, setParameters] = useState("");
  const chosen = plans.find((p) => p.plan === plan) ?? plans[0];
  const brokered = chosen !== undefined && chosen.source !== "herd";
  const create = async () => {
    const params = brokered ? parametersOf(parameters) : undefined;
    const reply = await client.post<{
      addon: { name: string };
      binding?: { app: string; var: string; vars?: string[] };
    }>("/addons", {
      kind,
      ...(chosen ? { plan: chosen.plan } : {}),
      ...(name ? { name } : {}),
      ...(app ? { app } : {}),
      ...(app && as ? { var: as } : {}),
      ...(schedule ? { backup: { schedule } } : {}),
      ...(params ? { parameters: params } : {}),
    });
    setName("");
    setApp("");
    setAs("");
    setSchedule("");
    setParameters("");
    props.done({
      name: reply.addon.name,
      ...(reply.binding ? { app: reply.binding.app, vars: reply.binding.vars ?? [reply.binding.var] } : {}),
    });
  };
  return (
    <Section title="New add-on" id="addon-new">
      <form className="stack" onSubmit={(e) => e.preventDefault()}>
        <div className="row">
          <label className="field inline">
            <span>Kind</span>
            <select
              value={kind}
              onChange={(e) => {
                setKind(e.target.value);
                setPlan("");
              }}
              data-testid="addon-kind"
            >
              {kinds.map((k) => (
                <option key={k}>{k}</option>
              ))}
            </select>
          </label>
          <label className="field inline">
            <span>Plan</span>
            <select
              value={chosen?.plan ?? ""}
              onChange={(e) => setPlan(e.target.value)}
              title={chosen?.description}
              data-testid="addon-plan"
            >
              {plans.map((p) => (
                <option key={`${p.source}/${p.plan}`} value={p.plan}>
                  {p.plan} ({p.description})
                </option>
              ))}
            </select>
          </label>
          <label className="field inline">
            <span>Name</span>
            <input
              value={name}
              placeholder={app ? `${app}-${kind.replace(/.*\//, "")}` : "required without an app"}
              onChange={(e) => setName(e.target.value)}
              data-testid="addon-name"
            />
          </label>
        </div>
        <div className="row">
          <label className="field inline">
            <span>Bind to app</span>
            <select value={app} onChange={(e) => setApp(e.target.value)} data-testid="addon-app">
              <option value="">none</option>
              {props.apps.map((a) => (
                <option key={a}>{a}</option>
              ))}
            </select>
          </label>
          <label className="field inline">
            <span>As</span>
            <input
              value={as}
              disabled={!app}
              placeholder={kind === "redis" ? "REDIS_URL" : "DATABASE_URL"}
              onChange={(e) => setAs(e.target.value.toUpperCase())}
              title="The env variable that carries the URL"
              data-testid="addon-var"
            />
          </label>
          {brokered ? null : (
            <label className="field inline">
              <span>Backups (cron, UTC)</span>
              <input
                value={schedule}
                placeholder="none, or 0 3 * * *"
                onChange={(e) => setSchedule(e.target.value)}
                data-testid="addon-schedule"
              />
            </label>
          )}
        </div>
        {brokered ? (
          <label className="field">
            <span>Parameters for {chosen.source} (JSON, checked against the plan's schema)</span>
            <textarea
              rows={3}
              value={parameters}
              placeholder="{}"
              onChange={(e) => setParameters(e.target.value)}
              data-testid="addon-parameters"
            />
          </label>
        ) : null}
        <div className="row">
          <ActionButton
            label="Create add-on"
            kind="primary"
            disabled={!name && !app}
            title={!name && !app ? "Give it a name or an app to bind it to" : undefined}
            testId="addon-create"
            onAct={create}
          />
          <span className="small muted">
            {app
              ? `Waits for the server to run, then binds it: ${app}'s new release rolls out.`
              : "Its server starts; bind it to an app below."}
          </span>
        </div>
      </form>
    </Section>
  );
}
