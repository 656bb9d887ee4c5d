// Alerts: what fires and what is pending now, what resolved lately (the
// AlertResolved events), and the silences. An alert is silenced from its row
// (every label of it matched, for 1 h to 1 week); a silence ends early with
// "Expire".
//
//   GET /alerts · GET /events (AlertFiring/AlertResolved) · GET|POST /alerts/silences · DELETE /alerts/silences/:id

import { useState } from "react";
import type { Event } from "../../../src/model/objects.ts";
import type { ActiveAlertView } from "../api-types.ts";
import { ActionButton, ErrorBox, Loading, Section } from "../components/ui.tsx";
import { ago } from "../format.ts";
import { Link } from "../router.tsx";
import { useSession } from "../session.tsx";
import { usePoll } from "../use-poll.ts";

interface SilenceView {
  id: string;
  matchers: { name: string; op: string; value: string }[];
  startsAt: string;
  until: string;
  comment: string;
  state: "active" | "expired";
}

const FOR = { "1h": 3600, "4h": 4 * 3600, "24h": 86_400, "1w": 7 * 86_400 } as const;

/** The matchers that pick out exactly this alert: each of its labels (at most 20). */
export function matchersOf(labels: Record<string, string>): string[] {
  return Object.entries(labels)
    .sort(([a], [b]) => (a === "alertname" ? -1 : b === "alertname" ? 1 : a.localeCompare(b)))
    .slice(0, 20)
    .map(([k, v]) => `${k}=${JSON.stringify(v)}`);
}

function SilenceForm(props: { alert: ActiveAlertView; done: () => void }) {
  const { client } = useSession();
  const [span, setSpan] = useState<keyof typeof FOR>("1h");
  const [comment, setComment] = useState("");
  const id = props.alert.fingerprint.slice(0, 12);
  return (
    <span className="row inline-form">
      <label className="field inline">
        <span>for</span>
        <select
          value={span}
          onChange={(e) => setSpan(e.target.value as keyof typeof FOR)}
          data-testid={`silence-for-${id}`}
        >
          {Object.keys(FOR).map((k) => (
            <option key={k}>{k}</option>
          ))}
        </select>
      </label>
      <label className="field inline">
        <span>why</span>
        <input value={comment} maxLength={200} size={14} onChange={(e) => setComment(e.target.value)} />
      </label>
      <ActionButton
        label="Silence"
        kind="primary"
        testId={`silence-${id}`}
        onAct={async () => {
          await client.post("/alerts/silences", {
            matchers: matchersOf(props.alert.labels),
            until: new Date(Date.now() + FOR[span] * 1000).toISOString(),
            comment: comment || `from the console: ${props.alert.rule}`,
          });
          props.done();
        }}
      />
    </span>
  );
}

export function AlertsPage() {
  const { client, can } = useSession();
  const mayRead = can("telemetry:read");
  const mayWrite = can("apps:write");
  const alerts = usePoll(
    (signal) =>
      mayRead
        ? client.get<{ items: ActiveAlertView[] }>("/alerts", { signal })
        : Promise.resolve({ items: [] }),
    5000,
    [client],
  );
  const silences = usePoll(
    (signal) =>
      mayRead
        ? client.get<{ items: SilenceView[] }>("/alerts/silences", { signal })
        : Promise.resolve({ items: [] }),
    10_000,
    [client],
  );
  const events = usePoll(
    (signal) => client.get<{ items: Event[] }>("/events", { query: { limit: 500 }, signal }),
    10_000,
    [client],
  );
  const resolved = (events.data?.items ?? [])
    .filter((e) => e.reason === "AlertResolved")
    .sort((a, b) => b.time.localeCompare(a.time))
    .slice(0, 50);
  const reload = () => {
    alerts.reload();
    silences.reload();
  };
  const [silencing, setSilencing] = useState<string>();
  const order = { firing: 0, pending: 1 } as const;
  const active = [...(alerts.data?.items ?? [])].sort(
    (a, b) => order[a.state] - order[b.state] || a.rule.localeCompare(b.rule),
  );
  if (!mayRead)
    return (
      <div className="page">
        <h1>Alerts</h1>
        <p className="muted">Your role cannot read alerts.</p>
      </div>
    );
  return (
    <div className="page">
      <h1>Alerts</h1>
      <Section title={`Firing and pending (${active.length})`} id="active">
        <ErrorBox error={alerts.error} />
        {!alerts.data ? (
          <Loading what="alerts" />
        ) : active.length === 0 ? (
          <p className="muted">Nothing fires or is pending.</p>
        ) : (
          <div className="scroll">
            <table data-testid="active-alerts">
              <thead>
                <tr>
                  <th scope="col">Alert</th>
                  <th scope="col">State</th>
                  <th scope="col">Severity</th>
                  <th scope="col">Value</th>
                  <th scope="col">Since</th>
                  <th scope="col">Labels</th>
                  <th scope="col">Silence</th>
                </tr>
              </thead>
              <tbody>
                {active.map((a) => (
                  <tr key={a.fingerprint} data-testid={`alert-${a.rule}`}>
                    <th scope="row">
                      {a.rule}
                      {a.app ? (
                        <>
                          {" "}
                          <Link to={`/apps/${encodeURIComponent(a.app)}`}>{a.app}</Link>
                        </>
                      ) : null}
                      <div className="small muted">{a.annotations.summary ?? ""}</div>
                    </th>
                    <td>
                      <span className={`badge ${a.state === "firing" ? "bad" : "busy"}`}>{a.state}</span>
                    </td>
                    <td>{a.severity}</td>
                    <td>{Number.isInteger(a.value) ? a.value : a.value.toPrecision(3)}</td>
                    <td>{ago(a.firingSince ?? a.since)}</td>
                    <td className="small labels">
                      {Object.entries(a.labels)
                        .filter(([k]) => k !== "alertname" && k !== "severity")
                        .map(([k, v]) => `${k}=${v}`)
                        .join(" ")}
                    </td>
                    <td>
                      {a.silencedBy ? (
                        <span className="badge plain" data-testid="silenced">
                          silenced ({a.silencedBy})
                        </span>
                      ) : !mayWrite ? (
                        <span className="muted">—</span>
                      ) : silencing === a.fingerprint ? (
                        <SilenceForm
                          alert={a}
                          done={() => {
                            setSilencing(undefined);
                            reload();
                          }}
                        />
                      ) : (
                        <button
                          type="button"
                          className="plain"
                          onClick={() => setSilencing(a.fingerprint)}
                          data-testid={`silence-open-${a.rule}`}
                        >
                          Silence…
                        </button>
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </Section>
      <div className="columns">
        <Section
          title={`Silences (${(silences.data?.items ?? []).filter((s) => s.state === "active").length} active)`}
          id="silences"
        >
          <ErrorBox error={silences.error} />
          {!silences.data ? (
            <Loading what="silences" />
          ) : silences.data.items.length === 0 ? (
            <p className="muted">No silences.</p>
          ) : (
            <ul className="list" data-testid="silences">
              {[...silences.data.items]
                .sort((a, b) => a.state.localeCompare(b.state) || b.until.localeCompare(a.until))
                .map((s) => (
                  <li key={s.id}>
                    <span className={`badge ${s.state === "active" ? "busy" : "plain"}`}>{s.state}</span>{" "}
                    <code className="small">
                      {s.matchers.map((m) => `${m.name}${m.op}${JSON.stringify(m.value)}`).join(", ")}
                    </code>
                    <div className="small muted">
                      {s.id} · until {s.until.replace("T", " ").slice(0, 16)} UTC
                      {s.comment ? ` · ${s.comment}` : ""}
                    </div>
                    {s.state === "active" && mayWrite ? (
                      <ActionButton
                        label="Expire"
                        confirm="Confirm expire"
                        onAct={async () => {
                          await client.call(`/alerts/silences/${s.id}`, { method: "DELETE" });
                          reload();
                        }}
                      />
                    ) : null}
                  </li>
                ))}
            </ul>
          )}
        </Section>
        <Section title="Resolved lately" id="resolved">
          <ErrorBox error={events.error} />
          {!events.data ? (
            <Loading what="events" />
          ) : resolved.length === 0 ? (
            <p className="muted">No alert resolved in the recent events.</p>
          ) : (
            <ul className="list" data-testid="resolved">
              {resolved.map((e) => (
                <li key={e.id}>
                  <span className="badge good">resolved</span> {e.message}{" "}
                  <span className="muted small">{ago(e.time)}</span>
                </li>
              ))}
            </ul>
          )}
        </Section>
      </div>
    </div>
  );
}
