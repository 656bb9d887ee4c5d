// The Services tab's secrets (docs/secrets.md), as Heroku's config vars:
// names, versions, who changed each and when — never a value. Those who may
// write secrets set one (the value goes in and never comes back; when the
// running release uses it a new release rolls out, and the page links its
// deploy) and unset one (refused while the release gives it to a service).
//
//   GET /apps/:app/secrets (secrets:read) · PUT|DELETE /apps/:app/secrets/:name (secrets:write)

import { useState } from "react";
import type { SecretInfo } from "../api-types.ts";
import { ActionButton, ErrorBox, Section, TableHead } from "../components/ui.tsx";
import { ago } from "../format.ts";
import { Link } from "../router.tsx";
import { useSession } from "../session.tsx";
import { usePoll } from "../use-poll.ts";

export function SecretsSection({ app }: { app: string }) {
  const { client, can } = useSession();
  const path = `/apps/${encodeURIComponent(app)}/secrets`;
  const mayRead = can("secrets:read");
  const mayWrite = can("secrets:write");
  const secrets = usePoll(
    (signal) =>
      mayRead ? client.get<{ items: SecretInfo[] }>(path, { signal }) : Promise.resolve({ items: [] }),
    15_000,
    [client, path, mayRead],
  );
  const [name, setName] = useState("");
  const [value, setValue] = useState("");
  const [rollout, setRollout] = useState<{ name: string; version: number; deploy?: string }>();
  const items = secrets.data?.items ?? [];
  return (
    <Section title="Secrets" id="secrets">
      <ErrorBox error={secrets.error} />
      <p className="small muted">Names and versions only; values are never shown.</p>
      {items.length === 0 ? (
        <p className="muted" data-testid="secrets-none">
          none
        </p>
      ) : (
        <div className="scroll">
          <table data-testid="secrets">
            <TableHead columns={["Name", "Version", "Changed by", "Changed"]} actions={mayWrite} />
            <tbody>
              {items.map((x) => (
                <tr key={x.name} data-testid={`secret-${x.name}`}>
                  <th scope="row">
                    <code>{x.name}</code>
                  </th>
                  <td>v{x.version}</td>
                  <td>{x.updatedBy}</td>
                  <td title={x.updatedAt}>{ago(x.updatedAt)}</td>
                  {mayWrite ? (
                    <td>
                      <ActionButton
                        label="Unset"
                        kind="danger"
                        confirm={`Confirm unset ${x.name}`}
                        testId={`secret-unset-${x.name}`}
                        onAct={async () => {
                          await client.call(`${path}/${encodeURIComponent(x.name)}`, { method: "DELETE" });
                          secrets.reload();
                        }}
                      />
                    </td>
                  ) : null}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {rollout ? (
        <p className="small" data-testid="secret-rollout">
          {rollout.name} is at v{rollout.version}
          {rollout.deploy ? (
            <>
              ; the release that uses it rolls out:{" "}
              <Link to={`/apps/${encodeURIComponent(app)}/deploys/${encodeURIComponent(rollout.deploy)}`}>
                deploy {rollout.deploy}
              </Link>
            </>
          ) : (
            "; no release uses it yet"
          )}
        </p>
      ) : null}
      {mayWrite ? (
        <form className="row" onSubmit={(e) => e.preventDefault()}>
          <label className="field inline">
            <span>Name</span>
            <input value={name} onChange={(e) => setName(e.target.value)} data-testid="secret-name" />
          </label>
          <label className="field inline grow">
            <span>Value</span>
            <input
              type="password"
              autoComplete="off"
              value={value}
              onChange={(e) => setValue(e.target.value)}
              data-testid="secret-value"
            />
          </label>
          <ActionButton
            label="Set secret"
            kind="primary"
            disabled={!name || !value}
            testId="secret-set"
            onAct={async () => {
              const reply = await client.call<{ secret: SecretInfo; deploy?: { id: string } }>(
                `${path}/${encodeURIComponent(name)}`,
                { method: "PUT", body: { value } },
              );
              setRollout({
                name: reply.secret.name,
                version: reply.secret.version,
                ...(reply.deploy ? { deploy: reply.deploy.id } : {}),
              });
              setName("");
              setValue("");
              secrets.reload();
            }}
          />
        </form>
      ) : null}
    </Section>
  );
}
