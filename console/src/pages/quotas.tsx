// Quotas: each of your tenants' quota in resource units (one unit is the
// platform's CPU and memory step) against the units its services hold
// (desired instances × units each), its domains and deploy limits, and whether
// its containers may run as their image's own user. A platform admin sets or
// removes a quota, and allows or denies the image's user, here.
//
//   GET /tenants · GET /tenants/:name (usage) · PUT /tenants/:name/quota, …/image-user (platform:write)

import { useState } from "react";
import type { Tenant } from "../../../src/model/objects.ts";
import { ActionButton, ErrorBox, Loading, Meter, Section } from "../components/ui.tsx";
import { bytes, cores } from "../format.ts";
import { useSession } from "../session.tsx";
import { usePoll } from "../use-poll.ts";

type TenantView = Tenant & { usage: { units: number }; unit: { cpu: number; memory: number } };

function QuotaEditor(props: { tenant: TenantView; done: () => void }) {
  const { client } = useSession();
  const [units, setUnits] = useState(props.tenant.quota ? String(props.tenant.quota.units) : "");
  const put = (value: number | null) => async () => {
    await client.call(`/tenants/${encodeURIComponent(props.tenant.name)}/quota`, {
      method: "PUT",
      body: { units: value },
      scoped: false,
    });
    props.done();
  };
  return (
    <div className="row">
      <label className="field inline">
        <span>Units</span>
        <input
          type="number"
          min={0}
          step="any"
          value={units}
          onChange={(e) => setUnits(e.target.value)}
          size={6}
          data-testid={`quota-input-${props.tenant.name}`}
        />
      </label>
      <ActionButton
        label="Set quota"
        kind="primary"
        disabled={units === "" || Number(units) < 0}
        onAct={put(Number(units))}
      />
      {props.tenant.quota ? (
        <ActionButton label="Remove quota" confirm="Confirm no limit" onAct={put(null)} />
      ) : null}
    </div>
  );
}

/** Whether the tenant's containers may run as their image's own user (user: image); an admin switches it. */
function ImageUser(props: { tenant: TenantView; mayWrite: boolean; done: () => void }) {
  const { client } = useSession();
  const allowed = props.tenant.allowImageUser === true;
  const put = async () => {
    await client.call(`/tenants/${encodeURIComponent(props.tenant.name)}/image-user`, {
      method: "PUT",
      body: { allowed: !allowed },
      scoped: false,
    });
    props.done();
  };
  return (
    <div className="row">
      <p className="small" data-testid={`image-user-${props.tenant.name}`}>
        Containers run as{" "}
        {allowed
          ? "their image's own user where a service says user: image (root when the image names none)"
          : "the tenant's uid (user: image is refused)"}
      </p>
      {props.mayWrite ? (
        <ActionButton
          label={allowed ? "Deny image user" : "Allow image user"}
          confirm={allowed ? undefined : "Confirm: images may run as root"}
          testId={`image-user-toggle-${props.tenant.name}`}
          onAct={put}
        />
      ) : null}
    </div>
  );
}

export function QuotasPage() {
  const { client, can } = useSession();
  const mayWrite = can("platform:write");
  const tenants = usePoll(
    async (signal) => {
      const list = await client.get<{ items: Tenant[] }>("/tenants", { signal, scoped: false });
      return Promise.all(
        list.items.map((t) =>
          client.get<TenantView>(`/tenants/${encodeURIComponent(t.name)}`, { signal, scoped: false }),
        ),
      );
    },
    10_000,
    [client],
  );
  return (
    <div className="page">
      <h1>Quotas</h1>
      <ErrorBox error={tenants.error} />
      {!tenants.data ? (
        <Loading what="tenants" />
      ) : (
        <div className="cards">
          {tenants.data.map((t) => (
            <Section key={t.name} title={t.name} id={`tenant-${t.name}`}>
              <p data-testid={`quota-${t.name}`}>
                {t.usage.units} units in use
                {t.quota ? ` of ${t.quota.units}` : " · no quota"}{" "}
                <span className="muted small">
                  (1 unit = {cores(t.unit.cpu)}, {bytes(t.unit.memory)})
                </span>
              </p>
              {t.quota ? (
                <Meter used={t.usage.units} total={t.quota.units} label={`${t.name} units of quota`} />
              ) : null}
              {t.domains?.length ? <p className="small">Domains: {t.domains.join(", ")}</p> : null}
              {t.limits ? (
                <p className="small muted">
                  Limits:{" "}
                  {Object.entries(t.limits)
                    .map(([k, v]) => `${k} ${k.endsWith("Bytes") ? bytes(v as number) : v}`)
                    .join(" · ")}
                </p>
              ) : null}
              {mayWrite ? <QuotaEditor tenant={t} done={tenants.reload} /> : null}
              <ImageUser tenant={t} mayWrite={mayWrite} done={tenants.reload} />
            </Section>
          ))}
        </div>
      )}
    </div>
  );
}
