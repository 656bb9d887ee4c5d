// Quotas: each of your tenants' quota in resource units (one unit is the
// platform's CPU and memory step) against the units its services hold
// (desired instances × units each), its domains and deploy limits, and whether
// its containers may run as their image's own user. A platform admin sets or
// removes a quota, gives a tenant its domains, allows or denies the image's
// user, and makes a new tenant, here.
//
//   GET /tenants · GET /tenants/:name (usage) · POST /tenants,
//   PUT /tenants/:name/quota, …/domains, …/image-user (platform:write)

import { useState } from "react";
import type { Tenant } from "../../../src/model/objects.ts";
import { ActionButton, ErrorBox, Loading, Meter, Section } from "../components/ui.tsx";
import { bytes, cores } from "../format.ts";
import { useSession } from "../session.tsx";
import { usePoll } from "../use-poll.ts";

type TenantView = Tenant & { usage: { units: number }; unit: { cpu: number; memory: number } };

/** PUT one of a tenant's settings (quota, domains, image-user; platform:write), then `done`. */
function usePutTenant(tenant: TenantView, done: () => void) {
  const { client } = useSession();
  return async (what: "quota" | "domains" | "image-user", body: unknown) => {
    await client.call(`/tenants/${encodeURIComponent(tenant.name)}/${what}`, {
      method: "PUT",
      body,
      scoped: false,
    });
    done();
  };
}

function QuotaEditor(props: { tenant: TenantView; done: () => void }) {
  const [units, setUnits] = useState(props.tenant.quota ? String(props.tenant.quota.units) : "");
  const putTenant = usePutTenant(props.tenant, props.done);
  const put = (value: number | null) => () => putTenant("quota", { units: value });
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
  const allowed = props.tenant.allowImageUser === true;
  const putTenant = usePutTenant(props.tenant, props.done);
  const put = () => putTenant("image-user", { allowed: !allowed });
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

/** Domains as typed: names split on spaces and commas. */
const domainsOf = (text: string): string[] => text.split(/[\s,]+/).filter(Boolean);

/** A tenant's domains (only its routes may use those hosts); an admin replaces or clears them. */
function DomainsEditor(props: { tenant: TenantView; done: () => void }) {
  const [text, setText] = useState((props.tenant.domains ?? []).join(" "));
  const putTenant = usePutTenant(props.tenant, props.done);
  const put = (domains: string[]) => () => putTenant("domains", { domains });
  return (
    <div className="row">
      <label className="field inline grow">
        <span>Domains</span>
        <input
          value={text}
          placeholder="shop.example.com"
          onChange={(e) => setText(e.target.value)}
          data-testid={`domains-input-${props.tenant.name}`}
        />
      </label>
      <ActionButton
        label="Set domains"
        testId={`domains-set-${props.tenant.name}`}
        disabled={domainsOf(text).length === 0}
        onAct={put(domainsOf(text))}
      />
      {props.tenant.domains?.length ? (
        <ActionButton label="No domains" confirm="Confirm: take every domain away" onAct={put([])} />
      ) : null}
    </div>
  );
}

/** A new tenant: its name, a quota in units (empty: none) and its domains. */
function NewTenant() {
  const { client, refresh } = useSession();
  const [name, setName] = useState("");
  const [units, setUnits] = useState("");
  const [domains, setDomains] = useState("");
  return (
    <Section title="New tenant" id="tenant-new">
      <form className="row" onSubmit={(e) => e.preventDefault()}>
        <label className="field inline">
          <span>Name</span>
          <input value={name} onChange={(e) => setName(e.target.value)} data-testid="tenant-name" />
        </label>
        <label className="field inline">
          <span>Quota (units)</span>
          <input
            type="number"
            min={0}
            step="any"
            size={6}
            value={units}
            placeholder="none"
            onChange={(e) => setUnits(e.target.value)}
            data-testid="tenant-quota"
          />
        </label>
        <label className="field inline grow">
          <span>Domains</span>
          <input
            value={domains}
            placeholder="optional"
            onChange={(e) => setDomains(e.target.value)}
            data-testid="tenant-domains"
          />
        </label>
        <ActionButton
          label="Create tenant"
          kind="primary"
          disabled={!name}
          testId="tenant-create"
          onAct={async () => {
            await client.post(
              "/tenants",
              {
                name,
                ...(units !== "" ? { quota: { units: Number(units) } } : {}),
                ...(domainsOf(domains).length ? { domains: domainsOf(domains) } : {}),
              },
              { scoped: false },
            );
            setName("");
            setUnits("");
            setDomains("");
            // The header's tenant switcher lists it once whoami is asked again.
            await refresh();
          }}
        />
      </form>
      <p className="small muted">
        Then give it members on the Team page (switch to it in the header) or with{" "}
        <code>herd members add USER --tenant NAME --role owner</code>.
      </p>
    </Section>
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
      {mayWrite ? <NewTenant /> : null}
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
              {t.domains?.length ? (
                <p className="small" data-testid={`domains-${t.name}`}>
                  Domains: {t.domains.join(", ")}
                </p>
              ) : null}
              {t.limits ? (
                <p className="small muted">
                  Limits:{" "}
                  {Object.entries(t.limits)
                    .map(([k, v]) => `${k} ${k.endsWith("Bytes") ? bytes(v as number) : v}`)
                    .join(" · ")}
                </p>
              ) : null}
              {mayWrite ? <QuotaEditor tenant={t} done={tenants.reload} /> : null}
              {mayWrite ? <DomainsEditor tenant={t} done={tenants.reload} /> : null}
              <ImageUser tenant={t} mayWrite={mayWrite} done={tenants.reload} />
            </Section>
          ))}
        </div>
      )}
    </div>
  );
}
