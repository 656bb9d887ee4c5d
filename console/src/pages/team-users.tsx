// The Team page's Users section, for platform admins (docs/teams.md), as
// `herd users`: every person and service account with their roles per
// tenant. A platform admin makes a user (a platform admin too, if ticked),
// gives it a first role in the chosen tenant, makes its first token (shown
// once) from its Tokens, and deletes a user (its roles go, its tokens are
// revoked; never yourself).
//
//   GET /users (platform:read) · POST /users, DELETE /users/:name (platform:write)
//   PUT /tenants/:t/members/:user (members:write) · GET|POST /tokens (anyone's: platform admins)

import { useState } from "react";
import { ROLES, type Role, type UserView } from "../../../src/model/identity.ts";
import { ActionButton, ErrorBox, Loading, Section, TableHead } from "../components/ui.tsx";
import { ago } from "../format.ts";
import { useSession } from "../session.tsx";
import { usePoll } from "../use-poll.ts";
import { Tokens } from "./team-parts.tsx";

const rolesText = (u: UserView): string =>
  [...(u.admin ? ["platform admin"] : []), ...u.roles.map((r) => `${r.role} in ${r.tenant}`)].join(", ") ||
  "none";

export function Users({ mayWrite, changed }: { mayWrite: boolean; changed: () => void }) {
  const { client, tenant, whoami } = useSession();
  const users = usePoll(
    (signal) => client.get<{ items: UserView[] }>("/users", { scoped: false, signal }),
    15_000,
    [client],
  );
  const [open, setOpen] = useState<string>();
  const [name, setName] = useState("");
  const [admin, setAdmin] = useState(false);
  const [role, setRole] = useState<Role | "">("deployer");
  // Service accounts are their tenant's (Members, above); people are listed here.
  const people = (users.data?.items ?? []).filter((u) => !u.tenant);
  return (
    <Section title="Users" id="users">
      <ErrorBox error={users.error} />
      {!users.data ? (
        <Loading what="users" />
      ) : (
        <div className="scroll">
          <table data-testid="users">
            <TableHead columns={["User", "Roles", "Made"]} actions={mayWrite} />
            <tbody>
              {people.map((u) => (
                <tr key={u.name} data-testid={`user-${u.name}`}>
                  <th scope="row">{u.name}</th>
                  <td>{rolesText(u)}</td>
                  <td title={u.createdAt}>
                    {ago(u.createdAt)}
                    {u.createdBy ? ` by ${u.createdBy}` : ""}
                  </td>
                  {mayWrite ? (
                    <td>
                      <span className="action">
                        {u.name === whoami.user ? (
                          <span className="muted small">you (your tokens are above)</span>
                        ) : (
                          <>
                            <button
                              type="button"
                              className="plain"
                              aria-expanded={open === u.name}
                              onClick={() => setOpen(open === u.name ? undefined : u.name)}
                              data-testid={`user-tokens-${u.name}`}
                            >
                              {open === u.name ? "Hide tokens" : "Tokens"}
                            </button>
                            <ActionButton
                              label="Delete"
                              kind="danger"
                              confirm={`Confirm delete ${u.name}: roles go, tokens revoked`}
                              testId={`user-delete-${u.name}`}
                              onAct={async () => {
                                await client.call(`/users/${encodeURIComponent(u.name)}`, {
                                  method: "DELETE",
                                  scoped: false,
                                });
                                if (open === u.name) setOpen(undefined);
                                users.reload();
                                changed();
                              }}
                            />
                          </>
                        )}
                      </span>
                    </td>
                  ) : null}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {open ? <Tokens user={open} title={`Tokens of ${open}`} /> : null}
      {mayWrite ? (
        <form className="row" onSubmit={(e) => e.preventDefault()}>
          <label className="field inline grow">
            <span>New user</span>
            <input value={name} onChange={(e) => setName(e.target.value)} data-testid="user-name" />
          </label>
          <label className="field inline">
            <span>Role in {tenant}</span>
            <select
              value={role}
              onChange={(e) => setRole(e.target.value as Role | "")}
              data-testid="user-role"
            >
              <option value="">none</option>
              {ROLES.map((r) => (
                <option key={r}>{r}</option>
              ))}
            </select>
          </label>
          <label className="small">
            <input
              type="checkbox"
              checked={admin}
              onChange={(e) => setAdmin(e.target.checked)}
              data-testid="user-admin"
            />{" "}
            platform admin
          </label>
          <ActionButton
            label="Create user"
            kind="primary"
            disabled={!name}
            testId="user-create"
            onAct={async () => {
              await client.post("/users", { name, ...(admin ? { admin } : {}) }, { scoped: false });
              if (role)
                await client.call(
                  `/tenants/${encodeURIComponent(tenant)}/members/${encodeURIComponent(name)}`,
                  {
                    method: "PUT",
                    body: { role },
                    scoped: false,
                  },
                );
              // Its first token is the next thing an admin hands over: open its tokens.
              setOpen(name);
              setName("");
              setAdmin(false);
              users.reload();
              changed();
            }}
          />
        </form>
      ) : null}
    </Section>
  );
}
