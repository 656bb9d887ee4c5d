// Gateways: each gateway, the config version it serves against the control
// plane's, in sync or not, the last version it refused and why, when it last
// reported. Platform admins only (platform:read).
//
//   GET /gateways

import { ErrorBox, Loading, Section } from "../components/ui.tsx";
import { ago } from "../format.ts";
import { useSession } from "../session.tsx";
import { usePoll } from "../use-poll.ts";

interface GatewayView {
  id: string;
  url?: string;
  workers?: number;
  version: number;
  configVersion: number;
  inSync: boolean;
  routes: number;
  rejectedVersion?: number;
  error?: string;
  lastSeen: string;
  silent: boolean;
}

export function GatewaysPage() {
  const { client, can } = useSession();
  const admin = can("platform:read");
  const gateways = usePoll(
    (signal) =>
      admin
        ? client.get<{ configVersion: number; items: GatewayView[] }>("/gateways", { signal, scoped: false })
        : Promise.resolve(undefined),
    5000,
    [client],
  );
  const g = gateways.data;
  return (
    <div className="page">
      <h1>Gateways</h1>
      {!admin ? (
        <p className="muted">Only a platform admin sees the gateways.</p>
      ) : (
        <Section title={g ? `Control plane config version ${g.configVersion}` : "Gateways"}>
          <ErrorBox error={gateways.error} />
          {!g ? (
            <Loading what="gateways" />
          ) : g.items.length === 0 ? (
            <p className="muted">No gateway has reported.</p>
          ) : (
            <div className="scroll">
              <table data-testid="gateways">
                <thead>
                  <tr>
                    <th scope="col">Gateway</th>
                    <th scope="col">Serves</th>
                    <th scope="col">State</th>
                    <th scope="col">Routes</th>
                    <th scope="col">Workers</th>
                    <th scope="col">Last report</th>
                    <th scope="col">Refused</th>
                  </tr>
                </thead>
                <tbody>
                  {g.items.map((x) => (
                    <tr key={x.id}>
                      <th scope="row">
                        {x.id}
                        {x.url ? <div className="small muted">{x.url}</div> : null}
                      </th>
                      <td>v{x.version}</td>
                      <td>
                        {x.silent ? (
                          <span className="badge bad">silent</span>
                        ) : x.inSync ? (
                          <span className="badge good">in sync</span>
                        ) : (
                          <span className="badge busy">behind v{x.configVersion}</span>
                        )}
                      </td>
                      <td>{x.routes}</td>
                      <td>{x.workers ?? "—"}</td>
                      <td>{ago(x.lastSeen)}</td>
                      <td className="small">
                        {x.rejectedVersion ? `v${x.rejectedVersion}: ${x.error ?? ""}` : "—"}
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </Section>
      )}
    </div>
  );
}
