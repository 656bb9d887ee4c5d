/**
 * `herd users`: the people (and service accounts) of the platform, for
 * platform admins: list with their roles, create, delete.
 *
 *   list ─► GET /users     create ─► POST /users {name, admin}     delete ─► DELETE /users/:name
 */

import type { User, UserView } from "../model/identity.ts";
import { UsageError } from "./args.ts";
import { type CommandSpec, confirmDestroy, printJson, println, stringFlag } from "./context.ts";
import { formatAge, renderTable } from "./format.ts";
import type { Items } from "./types.ts";

/** `herd users`, `users create NAME [--admin]`, `users delete NAME [--confirm NAME]`. */
export const usersCommand: CommandSpec = {
  name: "users",
  usage: "herd users\nherd users create NAME [--admin]\nherd users delete NAME [--confirm NAME]",
  summary:
    "List, create or delete users (platform admins). The list shows service accounts too, with\n" +
    "every role; deleting a user takes its roles and revokes its tokens. A new user gets roles with\n" +
    "`herd members add` and a token with `herd tokens create NAME --user USER`.",
  flags: [
    ["--admin", "create: a platform admin (every tenant, nodes, quotas, domains, users)"],
    ["--confirm NAME", "delete without asking (must repeat the user's name)"],
  ],
  options: { admin: { type: "boolean" }, confirm: { type: "string" } },
  async run(ctx, values, positionals) {
    const [action, name, ...extra] = positionals;
    const client = await ctx.client();
    if (action === undefined || action === "list") {
      if (name !== undefined) throw new UsageError(`unexpected argument: ${name}`, "users");
      const reply = await client.get<Items<UserView>>("/users");
      if (ctx.flags.json) printJson(ctx.stdout, reply);
      else println(ctx.stdout, usersTable(reply.items, ctx.now()));
      return 0;
    }
    if (action !== "create" && action !== "delete")
      throw new UsageError(`unknown users action: ${action}`, "users");
    if (!name) throw new UsageError(`users ${action} needs the user's name`, "users");
    if (extra.length > 0) throw new UsageError(`unexpected argument: ${extra[0]}`, "users");
    if (action === "create") {
      const user = await client.post<User>("/users", {
        name,
        ...(values.admin === true ? { admin: true } : {}),
      });
      if (ctx.flags.json) printJson(ctx.stdout, user);
      else {
        println(ctx.stdout, `Created ${user.admin ? "platform admin" : "user"} ${user.name}.`);
        if (!user.admin)
          println(ctx.stdout, `Give it a role: herd members add ${user.name} --tenant T --role viewer`);
        println(ctx.stdout, `Give it a token: herd tokens create laptop --user ${user.name} --expires 90d`);
      }
      return 0;
    }
    await confirmDestroy(
      ctx,
      {
        kind: "user",
        name,
        verb: "delete",
        command: "users",
        warning: `This deletes the user ${name}: its roles go and its tokens stop working.`,
      },
      stringFlag(values, "confirm"),
    );
    const user = await client.delete<User>(`/users/${encodeURIComponent(name)}`);
    if (ctx.flags.json) printJson(ctx.stdout, user);
    else println(ctx.stdout, `Deleted user ${name}: its roles are gone and its tokens revoked.`);
    return 0;
  },
};

/** `herd users`: NAME, KIND (admin, user, service account of T), ROLES, CREATED. */
export function usersTable(users: readonly UserView[], now: number): string {
  const rows = [...users]
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((u) => [
      u.name,
      u.admin ? "platform admin" : u.tenant ? `service account (${u.tenant})` : "user",
      u.roles.map((r) => `${r.tenant}:${r.role}`).join(" ") || "-",
      formatAge(u.createdAt, now),
    ]);
  return renderTable(["name", "kind", "roles", "created"], rows);
}
