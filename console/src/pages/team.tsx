// Team: your API tokens (create one, shown once; revoke), and for a tenant's
// owners its members and service accounts (docs/teams.md): give a user a
// role or change it, take it away, make a service account and tokens for it.
// Users themselves are a platform admin's (`herd users create`).
//
//   GET|POST /tokens, DELETE /tokens/:id (self; a service account's: its tenant's owners)
//   GET /tenants/:t/members (members:read) · PUT|DELETE /tenants/:t/members/:user, POST …/service-accounts (members:write)

import { useState } from "react";
import { type Member, ROLES, type Role, type Token } from "../../../src/model/identity.ts";
import { ActionButton, ErrorBox, Loading, Section, TableHead } from "../components/ui.tsx";
import { ago } from "../format.ts";
import { useSession } from "../session.tsx";
import { usePoll } from "../use-poll.ts";

type MemberView = Member & { serviceAccount?: true };

const LIFETIMES = [
  ["30d", "30 days"],
  ["90d", "90 days"],
  ["1y", "a year"],
  ["", "no expiry"],
] as const;

export function TeamPage() {
  const { whoami, tenant, can } = useSession();
  return (
    <div className="page">
      <h1>Team</h1>
      {whoami.user ? <Tokens user={whoami.user} title="Your tokens" /> : null}
      {can("members:read") ? (
        <Members tenant={tenant} mayWrite={can("members:write")} />
      ) : (
        <p className="muted">The members of {tenant} are its owners' to see and manage.</p>
      )}
    </div>
  );
}

/** A user's tokens: create (the secret shown once), revoke. */
function Tokens({ user, title }: { user: string; title: string }) {
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

function RoleSelect(props: { value: Role; onChange(r: Role): void; label: string; testId?: string }) {
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

function Members({ tenant, mayWrite }: { tenant: string; mayWrite: boolean }) {
  const { client } = useSession();
  const path = `/tenants/${encodeURIComponent(tenant)}`;
  const members = usePoll(
    (signal) => client.get<{ items: MemberView[] }>(`${path}/members`, { scoped: false, signal }),
    10_000,
    [client, path],
  );
  const [user, setUser] = useState("");
  const [role, setRole] = useState<Role>("deployer");
  const [account, setAccount] = useState(false);
  const [open, setOpen] = useState<string>();
  const give = async (name: string, r: Role) => {
    await client.call(`${path}/members/${encodeURIComponent(name)}`, {
      method: "PUT",
      body: { role: r },
      scoped: false,
    });
    members.reload();
  };
  return (
    <Section title={`Members of ${tenant}`} id="members">
      <ErrorBox error={members.error} />
      {!members.data ? (
        <Loading what="members" />
      ) : (
        <div className="scroll">
          <table data-testid="members">
            <TableHead columns={["User", "Role", "Kind", "Added"]} actions={mayWrite} />
            <tbody>
              {members.data.items.map((m) => (
                <MemberRow
                  key={m.user}
                  member={m}
                  mayWrite={mayWrite}
                  give={give}
                  remove={async () => {
                    await client.call(`${path}/members/${encodeURIComponent(m.user)}`, {
                      method: "DELETE",
                      scoped: false,
                    });
                    members.reload();
                  }}
                  tokens={open === m.user}
                  toggleTokens={() => setOpen(open === m.user ? undefined : m.user)}
                />
              ))}
            </tbody>
          </table>
        </div>
      )}
      {open ? <Tokens user={open} title={`Tokens of service account ${open}`} /> : null}
      {mayWrite ? (
        <form className="row" onSubmit={(e) => e.preventDefault()}>
          <label className="field inline">
            <span>Add</span>
            <select
              value={account ? "account" : "user"}
              onChange={(e) => setAccount(e.target.value === "account")}
            >
              <option value="user">an existing user</option>
              <option value="account">a new service account</option>
            </select>
          </label>
          <label className="field inline grow">
            <span>Name</span>
            <input value={user} onChange={(e) => setUser(e.target.value)} data-testid="member-name" />
          </label>
          <RoleSelect value={role} onChange={setRole} label="role" testId="member-role" />
          <ActionButton
            label={account ? "Create service account" : "Add member"}
            kind="primary"
            disabled={!user}
            testId="member-add"
            onAct={async () => {
              if (account) {
                await client.post(`${path}/service-accounts`, { name: user, role }, { scoped: false });
                members.reload();
              } else await give(user, role);
              setUser("");
            }}
          />
        </form>
      ) : null}
    </Section>
  );
}

function MemberRow(props: {
  member: MemberView;
  mayWrite: boolean;
  give(user: string, role: Role): Promise<void>;
  remove(): Promise<void>;
  tokens: boolean;
  toggleTokens(): void;
}) {
  const m = props.member;
  const [role, setRole] = useState<Role>(m.role);
  return (
    <tr data-testid={`member-${m.user}`}>
      <th scope="row">{m.user}</th>
      <td>
        {props.mayWrite ? (
          <span className="action">
            <RoleSelect value={role} onChange={setRole} label={`role of ${m.user}`} />
            <ActionButton
              label="Change"
              disabled={role === m.role}
              testId={`member-change-${m.user}`}
              onAct={() => props.give(m.user, role)}
            />
          </span>
        ) : (
          m.role
        )}
      </td>
      <td>{m.serviceAccount ? "service account" : "user"}</td>
      <td title={m.addedAt}>
        {ago(m.addedAt)}
        {m.addedBy ? ` by ${m.addedBy}` : ""}
      </td>
      {props.mayWrite ? (
        <td>
          <span className="action">
            {m.serviceAccount ? (
              <button
                type="button"
                className="plain"
                aria-expanded={props.tokens}
                onClick={props.toggleTokens}
                data-testid={`member-tokens-${m.user}`}
              >
                {props.tokens ? "Hide tokens" : "Tokens"}
              </button>
            ) : null}
            <ActionButton
              label={m.serviceAccount ? "Delete" : "Remove"}
              kind="danger"
              confirm={
                m.serviceAccount
                  ? `Confirm delete ${m.user} and revoke its tokens`
                  : `Confirm remove ${m.user} from the tenant`
              }
              testId={`member-remove-${m.user}`}
              onAct={props.remove}
            />
          </span>
        </td>
      ) : null}
    </tr>
  );
}
