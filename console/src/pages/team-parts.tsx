// Pieces of the Team page (team.tsx) that the platform admin's Users section
// (team-users.tsx) uses too: a user's tokens, and a role picker.
//
//   GET|POST /tokens, DELETE /tokens/:id (self; a service account's: its tenant's owners; anyone's: platform admins)

import { useState } from "react";
import { ROLES, type Role, type Token } from "../../../src/model/identity.ts";
import { ActionButton, ErrorBox, Loading, Section, TableHead } from "../components/ui.tsx";
import { ago } from "../format.ts";
import { useSession } from "../session.tsx";
import { usePoll } from "../use-poll.ts";

const LIFETIMES = [
  ["30d", "30 days"],
  ["90d", "90 days"],
  ["1y", "a year"],
  ["", "no expiry"],
] as const;

/** A user's tokens: create (the secret shown once), revoke. */
export function Tokens({ user, title }: { user: string; title: string }) {
  const { client, whoami } = useSession();
  const tokens = usePoll(
    (signal) => client.get<{ items: Token[] }>("/tokens", { query: { user }, scoped: false, signal }),
    15_000,
    [client, user],
  );
  const [name, setName] = useState("");
  const [lifetime, setLifetime] = useState<string>("90d");
  const [made, setMade] = useState<{ name: string; secret: string }>();
  return (
    <Section title={title} id={`tokens-${user}`}>
      <ErrorBox error={tokens.error} />
      {made ? (
        <div className="notice" role="status" data-testid={`token-made-${user}`}>
          <p>
            Token <strong>{made.name}</strong>: copy it now, it is not shown again (herd keeps only its hash).
          </p>
          <code className="value">{made.secret}</code>
        </div>
      ) : null}
      {!tokens.data ? (
        <Loading what="tokens" />
      ) : (
        <div className="scroll">
          <table data-testid={`tokens-table-${user}`}>
            <TableHead columns={["Id", "Name", "Created", "Expires", "Last used", "Revoked"]} actions />
            <tbody>
              {[...tokens.data.items].reverse().map((t) => (
                <tr key={t.id} data-testid={`token-${t.name}`}>
                  <th scope="row">
                    <code>{t.id}</code>
                    {t.id === whoami.token.id ? <span className="badge good">this session</span> : null}
                  </th>
                  <td>{t.name}</td>
                  <td title={t.createdAt}>{ago(t.createdAt)}</td>
                  <td>{t.expiresAt ? t.expiresAt.slice(0, 10) : "never"}</td>
                  <td>{ago(t.lastUsedAt)}</td>
                  <td>{t.revokedAt ? `${ago(t.revokedAt)} by ${t.revokedBy ?? "?"}` : "—"}</td>
                  <td>
                    {t.revokedAt ? null : (
                      <ActionButton
                        label="Revoke"
                        kind="danger"
                        confirm={
                          t.id === whoami.token.id
                            ? "Confirm: this signs you out"
                            : `Confirm revoke ${t.name}`
                        }
                        testId={`token-revoke-${t.name}`}
                        onAct={async () => {
                          await client.call(`/tokens/${t.id}`, { method: "DELETE", scoped: false });
                          tokens.reload();
                        }}
                      />
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <form className="row" onSubmit={(e) => e.preventDefault()}>
        <label className="field inline grow">
          <span>Name</span>
          <input
            value={name}
            onChange={(e) => setName(e.target.value)}
            placeholder="what it is for: laptop, ci"
            data-testid={`token-name-${user}`}
          />
        </label>
        <label className="field inline">
          <span>Expires</span>
          <select value={lifetime} onChange={(e) => setLifetime(e.target.value)}>
            {LIFETIMES.map(([v, label]) => (
              <option key={v} value={v}>
                {label}
              </option>
            ))}
          </select>
        </label>
        <ActionButton
          label="Create token"
          kind="primary"
          disabled={!name}
          testId={`token-create-${user}`}
          onAct={async () => {
            const reply = await client.post<{ token: string; name: string }>(
              "/tokens",
              { name, user, ...(lifetime ? { expiresIn: lifetime } : {}) },
              { scoped: false },
            );
            setMade({ name: reply.name, secret: reply.token });
            setName("");
            tokens.reload();
          }}
        />
      </form>
    </Section>
  );
}

export function RoleSelect(props: { value: Role; onChange(r: Role): void; label: string; testId?: string }) {
  return (
    <select
      value={props.value}
      aria-label={props.label}
      onChange={(e) => props.onChange(e.target.value as Role)}
      data-testid={props.testId}
    >
      {ROLES.map((r) => (
        <option key={r}>{r}</option>
      ))}
    </select>
  );
}
