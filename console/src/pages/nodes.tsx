// Nodes: each node's state, CPU and memory requested of allocatable (bars)
// and used, its instances; a platform admin also sees labels, agent version
// and drain progress, and may cordon, uncordon and drain, and remove a node
// that is drained or lost (its credential is revoked with it).
//
//   GET /capacity (every role) · GET /nodes (platform:read) · POST /nodes/:name/cordon|uncordon|drain,
//   DELETE /nodes/:name (platform:write)

import type { Node } from "../../../src/model/objects.ts";
import type { Capacity } from "../api-types.ts";
import { ActionButton, ErrorBox, Loading, Meter, Section, StateBadge } from "../components/ui.tsx";
import { ago, bytes, cores } from "../format.ts";
import { useSession } from "../session.tsx";
import { usePoll } from "../use-poll.ts";

type NodeView = Node & { instances: number; drain?: { done: boolean; message: string } };

export function NodesPage() {
  const { client, can } = useSession();
  const admin = can("platform:read");
  const mayWrite = can("platform:write");
  const capacity = usePoll((signal) => client.get<Capacity>("/capacity", { signal }), 5000, [client]);
  const nodes = usePoll(
    (signal) =>
      admin
        ? client.get<{ items: NodeView[] }>("/nodes", { signal, scoped: false })
        : Promise.resolve({ items: [] }),
    5000,
    [client],
  );
  const byName = new Map((nodes.data?.items ?? []).map((n) => [n.name, n]));
  const act = (name: string, what: "cordon" | "uncordon" | "drain") => async () => {
    await client.post(`/nodes/${encodeURIComponent(name)}/${what}`, undefined, { scoped: false });
    capacity.reload();
    nodes.reload();
  };
  const remove = (name: string) => async () => {
    await client.call(`/nodes/${encodeURIComponent(name)}`, { method: "DELETE", scoped: false });
    capacity.reload();
    nodes.reload();
  };
  return (
    <div className="page">
      <h1>Nodes</h1>
      <ErrorBox error={capacity.error ?? nodes.error} />
      {!capacity.data ? (
        <Loading what="nodes" />
      ) : (
        <div className="cards">
          {capacity.data.nodes.map((c) => {
            const n = byName.get(c.name);
            return (
              <Section key={c.name} title={c.name} id={`node-${c.name}`}>
                <p>
                  <StateBadge state={c.state} />{" "}
                  {c.schedulable ? null : (
                    <span className="badge busy" data-testid="cordoned">
                      {n?.draining ? "draining" : "cordoned"}
                    </span>
                  )}{" "}
                  <span className="muted small">
                    {c.instances} instances
                    {n ? ` · ${n.address} · agent ${n.agentVersion} · heartbeat ${ago(n.lastHeartbeat)}` : ""}
                  </span>
                </p>
                <div className="capacity">
                  <span>CPU</span>
                  <Meter used={c.requested.cpu} total={c.allocatable.cpu} label={`${c.name} CPU requested`} />
                  <span className="small">
                    {cores(c.requested.cpu)} of {cores(c.allocatable.cpu)} requested · used{" "}
                    {cores(c.used?.cpu)}
                  </span>
                  <span>Memory</span>
                  <Meter
                    used={c.requested.memory}
                    total={c.allocatable.memory}
                    label={`${c.name} memory requested`}
                  />
                  <span className="small">
                    {bytes(c.requested.memory)} of {bytes(c.allocatable.memory)} requested · used{" "}
                    {bytes(c.used?.memory)}
                  </span>
                </div>
                {n?.drain ? <p className="small">Drain: {n.drain.message}</p> : null}
                {n && Object.keys(n.labels).length > 0 ? (
                  <p className="small muted">
                    {Object.entries(n.labels)
                      .map(([k, v]) => `${k}=${v}`)
                      .join(" ")}
                  </p>
                ) : null}
                {mayWrite ? (
                  <div className="row">
                    {c.schedulable ? (
                      <ActionButton
                        label="Cordon"
                        onAct={act(c.name, "cordon")}
                        testId={`cordon-${c.name}`}
                      />
                    ) : (
                      <ActionButton
                        label="Uncordon"
                        onAct={act(c.name, "uncordon")}
                        testId={`uncordon-${c.name}`}
                      />
                    )}
                    {n?.draining ? null : (
                      <ActionButton
                        label="Drain"
                        kind="danger"
                        confirm={`Confirm drain ${c.name}`}
                        onAct={act(c.name, "drain")}
                        testId={`drain-${c.name}`}
                      />
                    )}
                    {n && (n.state === "lost" || n.drain?.done) ? (
                      <ActionButton
                        label="Remove"
                        kind="danger"
                        confirm={`Confirm remove ${c.name} (its credential is revoked)`}
                        onAct={remove(c.name)}
                        testId={`remove-${c.name}`}
                      />
                    ) : null}
                  </div>
                ) : null}
              </Section>
            );
          })}
        </div>
      )}
    </div>
  );
}
