/**
 * `herd restart [SERVICE…] [--app NAME]`: as `heroku ps:restart` and `kubectl
 * rollout restart`, every instance of the app (or of the named services)
 * is replaced by a new one, rolling (pets restart in place, one at a time);
 * it waits until that is done, showing what it waits for, and fails at
 * its deadline with the instances still to go.
 */

import { setTimeout as sleep } from "node:timers/promises";
import { type Instance, restartDue } from "../model/objects.ts";
import { DEADLINE_HELP, parseDeadline } from "../model/rollout.ts";
import { APP_FLAG_HELP, resolveApp } from "./app-name.ts";
import { UsageError } from "./args.ts";
import { type CommandSpec, printJson, println, stringFlag } from "./context.ts";

const DEFAULT_DEADLINE_MS = 120_000;

/** Of `services`' instances meant to run: those still to restart, and the new ones not running yet. */
function progress(items: readonly Instance[], services: readonly string[], since: string) {
  const mine = items.filter((i) => services.includes(i.service) && i.desired === "running");
  return {
    left: mine.filter((i) => i.state !== "stopped" && restartDue(i, since)),
    coming: mine.filter((i) => i.state !== "running" && !restartDue(i, since)),
  };
}

/** `4 to go (…) and 4 new to run (… provisioning)`; a pet restarts in place, so it is not new. */
export function waitingFor(left: readonly Instance[], coming: readonly Instance[]): string {
  const parts: string[] = [];
  if (left.length > 0) parts.push(`${left.length} to go (${left.map((i) => i.id).join(", ")})`);
  const fresh = coming.filter((i) => i.mode !== "pet");
  const pets = coming.filter((i) => i.mode === "pet");
  const states = (list: readonly Instance[]) => list.map((i) => `${i.id} ${i.state}`).join(", ");
  if (fresh.length > 0) parts.push(`${fresh.length} new to run (${states(fresh)})`);
  if (pets.length > 0) parts.push(`${pets.length} restarted in place to run (${states(pets)})`);
  return parts.join(" and ");
}

export const restartCommand: CommandSpec = {
  name: "restart",
  usage: "herd restart [SERVICE…] [--app NAME] [--deadline DURATION] [--no-wait]",
  summary:
    "Restart an app's instances (or those of the named services), as heroku ps:restart and kubectl rollout\n" +
    "restart do: cattle are replaced, the new ones serving before the old ones go; pets restart in place one\n" +
    "at a time. New instances start with the config's current keys in their env. Waits until every instance\n" +
    "is new (--no-wait: returns at once) and fails at the deadline (default 120s) naming those still to go.\n" +
    "A service in a canary or blue/green rollout is not restarted until the rollout ends (herd rollout).",
  flags: [
    APP_FLAG_HELP,
    ["--deadline DURATION", `how long to wait (default 120s): ${DEADLINE_HELP}`],
    ["--no-wait", "return once the restart is recorded"],
  ],
  options: { app: { type: "string" }, deadline: { type: "string" }, "no-wait": { type: "boolean" } },
  async run(ctx, values, positionals) {
    const app = await resolveApp(ctx, stringFlag(values, "app"), "restart");
    const raw = stringFlag(values, "deadline");
    const deadlineMs = raw === undefined ? DEFAULT_DEADLINE_MS : parseDeadline(raw);
    if (deadlineMs === undefined)
      throw new UsageError(`--deadline must be ${DEADLINE_HELP}, got ${raw}`, "restart");
    const client = await ctx.client();
    const path = `/apps/${encodeURIComponent(app)}`;
    const asked = await client.post<{ restartedAt: string; services: string[] }>(`${path}/restart`, {
      ...(positionals.length > 0 ? { services: positionals } : {}),
    });
    const { restartedAt, services } = asked;
    if (values["no-wait"] === true) {
      if (ctx.flags.json) printJson(ctx.stdout, asked);
      else
        println(ctx.stdout, `Restarting ${services.join(", ")} of ${app} (herd ps --app ${app} shows it).`);
      return 0;
    }
    if (!ctx.flags.json) println(ctx.stdout, `Restarting ${services.join(", ")} of ${app}…`);
    const until = Date.now() + deadlineMs;
    let said = "";
    for (;;) {
      const { items } = await client.get<{ items: Instance[] }>(`${path}/instances`);
      const { left, coming } = progress(items, services, restartedAt);
      if (left.length === 0 && coming.length === 0) {
        if (ctx.flags.json) printJson(ctx.stdout, { ...asked, done: true });
        else println(ctx.stdout, `${app}: every instance of ${services.join(", ")} restarted.`);
        return 0;
      }
      const now = `waiting for ${waitingFor(left, coming)}`;
      if (Date.now() >= until) {
        const why = [...left, ...coming].find((i) => i.message)?.message;
        ctx.stderr.write(
          `herd: the restart of ${app} did not finish within ${Math.round(deadlineMs / 1000)}s: ${now}${why ? `; ${why}` : ""}. ` +
            "Nothing was stopped before its replacement ran; the restart goes on (herd ps).\n",
        );
        return 1;
      }
      if (now !== said && !ctx.flags.json) println(ctx.stdout, `  ${now}`);
      said = now;
      await sleep(500);
    }
  },
};
