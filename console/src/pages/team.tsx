// Team: your API tokens (create one, shown once; revoke), and for a tenant's
// owners its members and service accounts (docs/teams.md): give a user a
// role or change it, take it away, make a service account and tokens for it.
// Platform admins also see every user, make and delete them (team-users.tsx).
//
//   GET|POST /tokens, DELETE /tokens/:id (team-parts.tsx)
//   GET /tenants/:t/members (members:read) · PUT|DELETE /tenants/:t/members/:user, POST …/service-accounts (members:write)

import { useState } from "react";
import type { Member, Role } from "../../../src/model/identity.ts";
import { ActionButton, ErrorBox, Loading, Section, TableHead } from "../components/ui.tsx";
import { ago } from "../format.ts";
import { useSession } from "../session.tsx";
import { usePoll } from "../use-poll.ts";
import { RoleSelect, Tokens } from "./team-parts.tsx";
import { Users } from "./team-users.tsx";

type MemberView = Member & { serviceAccount?: true };

export function TeamPage() {
  const { whoami, tenant, can } = useSession();
  // A user made or deleted below changes the members above.
  const [tick, setTick] = useState(0);
  return (
    <div className="page">
      <h1>Team</h1>
      {whoami.user ? <Tokens user={whoami.user} title="Your tokens" /> : null}
      {can("members:read") ? (
        <Members tenant={tenant} mayWrite={can("members:write")} tick={tick} />
      ) : (
        <p className="muted">The members of {tenant} are its owners' to see and manage.</p>
      )}
      {can("platform:read") ? (
        <Users mayWrite={can("platform:write")} changed={() => setTick((t) => t + 1)} />
      ) : null}
    </div>
  );
}

function Members({ tenant, mayWrite, tick }: { tenant: string; mayWrite: boolean; tick: number }) {
  const { client } = useSession();
  const path = `/tenants/${encodeURIComponent(tenant)}`;
  const members = usePoll(
    (signal) => client.get<{ items: MemberView[] }>(`${path}/members`, { scoped: false, signal }),
    10_000,
    [client, path, tick],
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
