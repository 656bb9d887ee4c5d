// The App page's automation: how its autoscaled services scale (count and
// bounds, target, the figures over the stable and panic windows and what they
// ask for, the last decisions with why), and the remediation engine's view of
// the app (on, dry run or paused; the budget; the rules; throttles and
// degrades in force; the decisions with their evidence and outcome). A
// deployer pauses and resumes the engine and switches dry run here; rules
// stay in `herd remediate rules set` (docs/remediation.md).
//
//   GET /apps/:app/autoscale · GET /apps/:app/remediation · POST …/remediation/pause|resume · PUT {dryRun}

import type { AutoscaleStatus } from "../../../src/controllers/autoscale.ts";
import type { RemediationPolicy, RemediationRule } from "../../../src/model/remediation.ts";
import { autoscaleTargetText } from "../../../src/model/service-spec.ts";
import { ActionButton, ErrorBox, Loading, Section, TableHead } from "../components/ui.tsx";
import { ago } from "../format.ts";
import { useSession } from "../session.tsx";
import { usePoll } from "../use-poll.ts";

/** GET /apps/:app/remediation (api/routes/remediation.ts RemediationStatus). */
interface RemediationView extends RemediationPolicy {
  rules: RemediationRule[];
  builtIn: boolean;
  budget: { used: number; limit: number };
}

export function AutomationTab({ app }: { app: string }) {
  const { client, can } = useSession();
  const path = `/apps/${encodeURIComponent(app)}`;
  const autoscale = usePoll(
    (signal) => client.get<{ items: AutoscaleStatus[] }>(`${path}/autoscale`, { signal }),
    2000,
    [client, app],
  );
  const remediation = usePoll(
    (signal) => client.get<RemediationView>(`${path}/remediation`, { signal }),
    3000,
    [client, app],
  );
  return (
    <>
      <Section title="Autoscaling" id="autoscaling">
        <ErrorBox error={autoscale.error} />
        {!autoscale.data ? (
          <Loading what="autoscaling" />
        ) : autoscale.data.items.length === 0 ? (
          <p className="muted">
            No service of {app} scales by itself: add <code>autoscale:</code> to a service in herd.yaml
            (docs/autoscaling.md).
          </p>
        ) : (
          autoscale.data.items.map((s) => <Autoscaled key={s.service} status={s} />)
        )}
      </Section>
      <Section title="Remediation" id="remediation">
        <ErrorBox error={remediation.error} />
        {!remediation.data ? (
          <Loading what="remediation" />
        ) : (
          <Remediation
            view={remediation.data}
            path={`${path}/remediation`}
            mayWrite={can("apps:write")}
            done={remediation.reload}
          />
        )}
      </Section>
    </>
  );
}

const seconds = (ms: number) => `${Number((ms / 1000).toFixed(1))} s`;

/** A figure in the target's unit and what it asks for: "83.2 rps → 2". */
function figure(t: AutoscaleStatus["target"], value: number | undefined, want: number | undefined): string {
  if (value === undefined) return "—";
  const shown = autoscaleTargetText({ ...t, value }).replace(/ of .*$/, "");
  return want === undefined ? shown : `${shown} → ${want}`;
}

function Autoscaled({ status: s }: { status: AutoscaleStatus }) {
  return (
    <div data-testid={`autoscale-${s.service}`}>
      <h3>
        {s.service}{" "}
        <span className="muted small">
          {s.instances} of {s.min}..{s.max} instances · {autoscaleTargetText(s.target)} per instance ·{" "}
          {s.mode}
        </span>
      </h3>
      <p className="small">
        Stable ({seconds(s.stableWindowMs)}): {figure(s.target, s.stable, s.stableWant)} · panic (
        {seconds(s.panicWindowMs)}): {figure(s.target, s.panic, s.panicWant)} · scales in after{" "}
        {seconds(s.scaleDownDelayMs)} · last request {ago(s.lastRequestAt)}
      </p>
      {s.decisions.length === 0 ? (
        <p className="muted small">No decision has changed its count yet.</p>
      ) : (
        <div className="scroll">
          <table>
            <TableHead columns={["When", "Change", "Why"]} />
            <tbody>
              {[...s.decisions].reverse().map((d) => (
                <tr key={`${d.time}-${d.from}-${d.to}`}>
                  <td title={d.time}>{ago(d.time)}</td>
                  <td>
                    {d.from} → {d.to} {d.panic ? <span className="badge busy">panic</span> : null}
                    {d.refused ? <span className="badge bad">refused</span> : null}
                  </td>
                  <td>
                    {d.reason}
                    {d.problem ? <span className="muted"> — {d.problem}</span> : null}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}

function Remediation(props: { view: RemediationView; path: string; mayWrite: boolean; done(): void }) {
  const { client } = useSession();
  const v = props.view;
  const mode = v.paused ? "paused" : v.dryRun ? "dry run: decides, changes nothing" : "on";
  const act = (run: () => Promise<unknown>) => async () => {
    await run();
    props.done();
  };
  return (
    <>
      <div className="row">
        <p data-testid="remediation-mode">
          <span className={`badge ${v.paused ? "bad" : v.dryRun ? "busy" : "good"}`}>{mode}</span> · budget{" "}
          {v.budget.used} of {v.budget.limit} changes in the last hour · rollback window {v.releaseWindowS} s
        </p>
        {props.mayWrite ? (
          <>
            {v.paused ? (
              <ActionButton
                label="Resume"
                kind="primary"
                testId="remediation-resume"
                onAct={act(() => client.post(`${props.path}/resume`))}
              />
            ) : (
              <ActionButton
                label="Pause"
                confirm="Confirm: the engine leaves this app alone"
                testId="remediation-pause"
                onAct={act(() => client.post(`${props.path}/pause`))}
              />
            )}
            <ActionButton
              label={v.dryRun ? "Act again" : "Dry run"}
              testId="remediation-dry-run"
              title={v.dryRun ? "Let the rules change things again" : "Decide and record, change nothing"}
              onAct={act(() => client.call(props.path, { method: "PUT", body: { dryRun: !v.dryRun } }))}
            />
          </>
        ) : null}
      </div>
      <h3>{v.builtIn ? "Rules (built-in)" : "Rules"}</h3>
      <div className="scroll">
        <table data-testid="remediation-rules">
          <TableHead columns={["Rule", "Symptom", "Service", "Threshold", "Window", "Actions"]} />
          <tbody>
            {v.rules.map((r) => (
              <tr key={r.name}>
                <th scope="row">
                  {r.name} {r.dryRun ? <span className="badge busy">dry run</span> : null}
                </th>
                <td>{r.symptom === "alert" ? `alert ${r.alert}` : r.symptom}</td>
                <td>{r.service ?? "all"}</td>
                <td>{r.threshold ?? "default"}</td>
                <td>{r.windowS === undefined ? "default" : `${r.windowS} s`}</td>
                <td>{r.actions.join(", ")}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {v.throttles.length > 0 || (v.degraded ?? []).length > 0 ? (
        <ul data-testid="remediation-in-force">
          {v.throttles.map((t) => (
            <li key={`t-${t.service}`}>
              {t.service}: concurrency lowered for {t.for || "an overloaded service"} since {ago(t.since)}
            </li>
          ))}
          {(v.degraded ?? []).map((d) => (
            <li key={`d-${d.service}`}>
              {d.service}: its routes answer their fallback (calls to {d.dependencies.join(", ")} failed)
              since {ago(d.since)}
            </li>
          ))}
        </ul>
      ) : null}
      <h3>Decisions</h3>
      {v.decisions.length === 0 ? (
        <p className="muted small">No decisions yet.</p>
      ) : (
        <ol className="timeline" data-testid="remediation-decisions">
          {[...v.decisions].reverse().map((d) => (
            <li key={d.id} className={d.outcome === "persists" ? "warning" : undefined}>
              <span title={d.at}>{ago(d.at)}</span> <strong>{d.rule}</strong> on {d.service}: {d.action}{" "}
              {d.target} {d.dryRun ? <span className="badge busy">dry run</span> : null}
              {d.outcome ? (
                <span className={`badge ${d.outcome === "cleared" ? "good" : "bad"}`}>{d.outcome}</span>
              ) : d.checkAt ? (
                <span className="badge plain">outcome pending</span>
              ) : null}
              <div className="small">{d.reason}</div>
              {d.applied && d.applied !== "applied" ? <div className="error inline">{d.applied}</div> : null}
              <details>
                <summary className="small">evidence</summary>
                <pre className="log small">{d.evidence.join("\n")}</pre>
              </details>
            </li>
          ))}
        </ol>
      )}
    </>
  );
}
