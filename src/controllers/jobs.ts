/**
 * Runs: one-off processes (`herd run`), release phases and scheduled jobs.
 *
 *   startRun ─► Run (pending) ─► tick: scheduler picks a node ─► starting
 *   heartbeat(node) ─► its runs as DesiredInstances (the agent runs them like instances:
 *                      same slug, sandbox, uid, cgroup; adopted after an agent restart)
 *                  ◄── their statuses ─► running ─► succeeded | failed (exit code, last lines)
 *   tick (every 500 ms): deadlines ─► stop (timed_out); lost nodes ─► failed;
 *                        schedules ─► one run per fired time (its id derived from job and time);
 *                        history ─► finished runs beyond `history` deleted
 *
 * Everything it knows is in the store (kind `run`): a restart of the control
 * plane loses no run and starts no scheduled time twice (a fired time's run
 * id is fixed, written with expectRevision 0). A finished run stays in its
 * node's reply (action stop) for LOG_GRACE_MS so its last lines are shipped,
 * then the agent removes its files.
 */

import { createHash } from "node:crypto";
import { HerdError, notFound } from "../common/errors.ts";
import { newId } from "../common/ids.ts";
import {
  EXIT_CODE_FILE,
  FINISHED,
  type JobSpec,
  lastFire,
  type Run,
  type RunKind,
  type RunState,
} from "../model/job.ts";
import {
  type App,
  appKey,
  type Deploy,
  type Instance,
  type Node,
  type Release,
  releaseKey,
  type Service,
  serviceKey,
} from "../model/objects.ts";
import type { DesiredInstance, InstanceStatus } from "../model/protocol.ts";
import { ClusterState } from "../scheduler/cluster-state.ts";
import { Scheduler, schedulerNode } from "../scheduler/scheduler.ts";
import { type StoredObject, updateObject } from "../store/store.ts";
import { placedInstances } from "./capacity-check.ts";
import type { Context } from "./context.ts";
import { imageUserOf } from "./image-user.ts";

/** How long a finished run stays in its node's reply, so its last log lines reach the log store. */
export const LOG_GRACE_MS = 5000;
/** One-off runs and release phases kept per app (the newest; jobs keep their `history`). */
export const KEPT_RUNS = 50;
/** How often deadlines, schedules and placements are looked at. */
const TICK_MS = 500;

/** What `startRun` needs. */
export interface RunRequest {
  tenant: string;
  app: string;
  /** Default: web, or the only service. */
  service?: string;
  command: string;
  timeoutMs: number;
  kind: RunKind;
  /** Default: the service's release. */
  release?: number;
  deploy?: string;
  createdBy?: string;
  /** Fixed id (a scheduled time's); default a new `run-…`/`rel-…` id. */
  id?: string;
  job?: string;
  scheduledAt?: string;
}

/**
 * The output lines of a run this server's log store holds after `after` (a
 * seq), oldest first: what the release phase shows while it runs. With one
 * server every node's lines come here; with several, a node ships to the
 * server it talks to, and the release phase shows its last lines when it
 * ends instead.
 */
export type RunOutput = (
  run: Pick<Run, "tenant" | "app" | "id">,
  after: number,
) => { seq: number; line: string }[];

/** How long a release phase that ended waits for its last lines to reach the log store (they ship every 250 ms). */
const OUTPUT_SETTLE_MS = 3000;

export class JobsController {
  readonly #ctx: Context;
  readonly #output: RunOutput | undefined;
  #timer: NodeJS.Timeout | undefined;
  #ticking = false;
  /** Where the scheduler's sampled scan starts next. */
  #cursor = 0;

  constructor(ctx: Context, output?: RunOutput) {
    this.#ctx = ctx;
    this.#output = output;
  }

  start(): void {
    this.#timer = setInterval(() => {
      if (this.#ticking) return;
      this.#ticking = true;
      void this.tick()
        .catch((err) => this.#ctx.logger.warn("jobs tick failed", { err }))
        .finally(() => {
          this.#ticking = false;
        });
    }, TICK_MS);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
  }

  #now(): number {
    return this.#ctx.clock.now();
  }

  #iso(ms = this.#now()): string {
    return new Date(ms).toISOString();
  }

  /** Stores a new run of the service's release (pending: the next tick places it). */
  async startRun(r: RunRequest): Promise<Run> {
    const { store } = this.#ctx;
    const app = await store.get<App>("app", appKey(r.tenant, r.app));
    if (!app || app.value.destroying) throw notFound(`app ${r.app} does not exist`);
    const version = r.release ?? app.value.release;
    if (version === null) throw new HerdError("conflict", `app ${r.app} has no release yet: deploy it first`);
    const release = await store.get<Release>("release", releaseKey(r.tenant, r.app, version));
    if (!release) throw notFound(`release v${version} of ${r.app} does not exist`);
    const names = Object.keys(release.value.services);
    const name = r.service ?? (names.includes("web") ? "web" : names.length === 1 ? names[0] : undefined);
    const spec = name === undefined ? undefined : release.value.services[name];
    if (name === undefined || spec === undefined) {
      const message =
        name === undefined
          ? `name the service (there is no web service): ${names.join(", ")}`
          : `release v${version} has no service ${name} (it has: ${names.join(", ")})`;
      throw new HerdError("invalid", `${r.app}: ${message}`, [{ field: "service", message }]);
    }
    const pins = Object.entries(spec.secrets ?? {}).map(([variable, secret]) => [
      variable,
      { secret, version: release.value.secrets?.[secret] ?? 0 },
    ]);
    const prefix = r.kind === "release" ? "rel" : r.kind === "job" ? "job" : "run";
    const run: Run = {
      id: r.id ?? `${prefix}-${newId(12)}`,
      tenant: r.tenant,
      app: r.app,
      service: name,
      release: version,
      kind: r.kind,
      ...(r.job ? { job: r.job, scheduledAt: r.scheduledAt } : {}),
      ...(r.deploy ? { deploy: r.deploy } : {}),
      command: r.command,
      node: null,
      state: "pending",
      message: "waiting for a node",
      timeoutMs: r.timeoutMs,
      createdAt: this.#iso(),
      ...(r.createdBy ? { createdBy: r.createdBy } : {}),
      spec: {
        slug: release.value.slug,
        command: recordingExit(r.command),
        // A container service's runs run in its image (or its release in the base image) on a node with the driver.
        ...(spec.image ? { image: spec.image } : {}),
        ...(spec.runtime ? { runtime: spec.runtime } : {}),
        ...(await imageUserOf(store, r.tenant, spec)),
        env: spec.env,
        ...(pins.length > 0 ? { secrets: Object.fromEntries(pins) } : {}),
        resources: spec.resources,
        // The process stays up, or it ended: a run has no port anyone probes.
        health: { kind: "process", intervalMs: 1000, timeoutMs: 1000, failures: 1, startupMs: r.timeoutMs },
      },
    };
    await store.put("run", run.id, run, { expectRevision: 0 });
    await this.#place(await this.#get(run.id));
    return (await this.#get(run.id)).value;
  }

  async #get(id: string): Promise<StoredObject<Run>> {
    const o = await this.#ctx.store.get<Run>("run", id);
    if (!o) throw notFound(`run ${id} does not exist`);
    return o;
  }

  /** The run, if it belongs to the app. */
  async getRun(tenant: string, app: string, id: string): Promise<Run> {
    const o = await this.#ctx.store.get<Run>("run", id);
    if (!o || o.value.tenant !== tenant || o.value.app !== app) throw notFound(`app ${app} has no run ${id}`);
    return o.value;
  }

  /** The app's runs, newest first. */
  async listRuns(tenant: string, app: string): Promise<Run[]> {
    const items = (await this.#ctx.store.list<Run>("run")).items
      .map((o) => o.value)
      .filter((r) => r.tenant === tenant && r.app === app);
    return items.sort((a, b) => b.createdAt.localeCompare(a.createdAt) || b.id.localeCompare(a.id));
  }

  /** Asks a run to stop (its agent stops the process); a pending run ends at once. */
  async stopRun(
    tenant: string,
    app: string,
    id: string,
    reason: "stopped" | "timed_out",
    message: string,
  ): Promise<Run> {
    await this.getRun(tenant, app, id);
    return this.#update(id, (r) => {
      if (FINISHED.has(r.state) || r.stop) return undefined;
      if (r.node === null) return this.#finished(r, reason, message);
      return { ...r, stop: { reason, message } };
    });
  }

  /** Applies `change` to the run, retried on a conflict; undefined from `change` leaves it. */
  async #update(id: string, change: (r: Run) => Run | undefined): Promise<Run> {
    let read: Run | undefined;
    let next: Run | undefined;
    await updateObject<Run>(this.#ctx.store, "run", id, (o) => {
      if (!o) throw notFound(`run ${id} does not exist`);
      read = o.value;
      next = change(o.value);
      return next;
    });
    if (!next) return read!;
    if (FINISHED.has(next.state) && !FINISHED.has(read!.state)) await this.#recordEnd(next);
    return next;
  }

  #finished(r: Run, state: RunState, message: string, extra: Partial<Run> = {}): Run {
    const { stop: _stop, ...rest } = r;
    return { ...rest, ...extra, state, message, finishedAt: this.#iso() };
  }

  async #recordEnd(r: Run): Promise<void> {
    const what = r.job ? `job ${r.job}` : r.kind === "release" ? "release phase" : "run";
    await this.#ctx.events.record({
      tenant: r.tenant,
      app: r.app,
      service: r.service,
      instance: r.id,
      ...(r.node ? { node: r.node } : {}),
      ...(r.deploy ? { deploy: r.deploy } : {}),
      reason: r.state === "succeeded" ? "RunSucceeded" : r.state === "skipped" ? "RunSkipped" : "RunFailed",
      type: r.state === "succeeded" || r.state === "skipped" ? "normal" : "warning",
      message: `${what} ${r.id} (${r.command}): ${r.state}${r.message ? ` (${r.message})` : ""}`,
      ...(r.state !== "succeeded" && r.logTail ? { details: r.logTail } : {}),
    });
  }

  /**
   * A node's heartbeat: the statuses of its runs move them on; the reply
   * lists its runs (running ones to run, stopping and just-finished ones to
   * stop). A run not listed is stopped and removed by the agent.
   */
  async heartbeat(node: string, statuses: readonly InstanceStatus[]): Promise<DesiredInstance[]> {
    const byId = new Map(statuses.map((s) => [s.id, s]));
    const now = this.#now();
    const reply: DesiredInstance[] = [];
    // This node's runs only (the informer's node index): a heartbeat costs what its node holds.
    await this.#ctx.informer.sync();
    for (const o of this.#ctx.informer.by<Run>("run", "node", node)) {
      let r = o.value;
      const status = byId.get(r.id);
      if (!FINISHED.has(r.state)) {
        const next = this.#applyStatus(r, status);
        if (next)
          r = await this.#update(r.id, (cur) =>
            cur.state === r.state && !FINISHED.has(cur.state) ? next : undefined,
          );
      }
      if (FINISHED.has(r.state) && now - Date.parse(r.finishedAt ?? r.createdAt) > LOG_GRACE_MS) continue;
      const action = FINISHED.has(r.state) || r.stop ? "stop" : "run";
      reply.push({
        id: r.id,
        app: r.app,
        service: r.service,
        tenant: r.tenant,
        release: r.release,
        mode: "cattle",
        generation: 1,
        action,
        run: r.spec,
        ...(action === "run" && r.spec.secrets ? await this.#secretEnv(r) : {}),
      });
    }
    return reply;
  }

  async #secretEnv(r: Run): Promise<Pick<DesiredInstance, "secretEnv" | "secretError">> {
    const env: Record<string, string> = {};
    for (const [variable, pin] of Object.entries(r.spec.secrets ?? {})) {
      try {
        env[variable] = await this.#ctx.secrets.value(r.tenant, r.app, pin.secret, pin.version);
      } catch (err) {
        return { secretError: `env ${variable}: ${(err as Error).message}` };
      }
    }
    return { secretEnv: env };
  }

  /** The run after what its agent reports, or undefined when nothing changes. */
  #applyStatus(r: Run, s: InstanceStatus | undefined): Run | undefined {
    if (!s) {
      // It ran there and the agent no longer has it (its data dir was wiped, or it was replaced).
      if (r.state === "running") return this.#finished(r, "failed", "its node's agent no longer has it");
      return undefined;
    }
    const facts = { ...(s.logTail ? { logTail: s.logTail } : {}) };
    const ended = s.state === "exited" || s.state === "stopped" || s.state === "failed";
    if (ended && r.stop) {
      return this.#finished(r, r.stop.reason, r.stop.message, {
        ...facts,
        exitCode: s.exitCode ?? null,
        signal: s.signal ?? null,
      });
    }
    switch (s.state) {
      case "starting":
        return r.state === "pending" ? { ...r, state: "starting", message: "starting" } : undefined;
      case "up":
      case "healthy":
      case "unhealthy":
        return r.state === "running"
          ? undefined
          : {
              ...r,
              state: "running",
              message: s.pid ? `pid ${s.pid}` : "",
              ...(s.pid ? { pid: s.pid } : {}),
              startedAt: s.startedAt ?? this.#iso(),
            };
      case "exited": {
        const code = s.exitCode ?? null;
        const extra = {
          ...facts,
          exitCode: code,
          signal: s.signal ?? null,
          startedAt: r.startedAt ?? s.startedAt,
        };
        if (code === 0) return this.#finished(r, "succeeded", "exited with code 0", extra);
        const why = s.oomKilled
          ? "killed for memory (over its limit)"
          : s.signal
            ? `killed by ${s.signal}`
            : code === null
              ? (s.message ?? "exit status unknown")
              : `exited with code ${code}`;
        return this.#finished(r, "failed", why, extra);
      }
      case "stopped":
        return this.#finished(r, "failed", "stopped when herd on its node shut down", facts);
      case "failed":
        return this.#finished(r, "failed", s.message ?? "could not be started", facts);
    }
  }

  /** One pass over every run and schedule (see the file's comment). */
  async tick(): Promise<void> {
    const { informer } = this.#ctx;
    const now = this.#now();
    // Nodes, runs and services from the informer, synced: no parse of every node each tick.
    await informer.sync();
    const nodes = new Map(informer.list<Node>("node").map((o) => [o.value.name, o.value]));
    const runs = byKey(informer.list<Run>("run"));
    for (const o of runs) {
      const r = o.value;
      if (FINISHED.has(r.state)) continue;
      if (now > Date.parse(r.createdAt) + r.timeoutMs && !r.stop) {
        await this.stopRun(
          r.tenant,
          r.app,
          r.id,
          "timed_out",
          `deadline of ${Math.round(r.timeoutMs / 1000)}s passed`,
        );
        continue;
      }
      if (r.node === null) await this.#place(o);
      else if (nodes.get(r.node)?.state === "lost")
        await this.#update(r.id, (cur) =>
          FINISHED.has(cur.state) ? undefined : this.#finished(cur, "failed", `node ${r.node} is lost`),
        );
    }
    await this.#fireSchedules(now, runs);
    await this.#pruneHistory(runs, now);
  }

  /** Picks a node for a pending run (the scheduler, like an instance of its service). */
  async #place(o: StoredObject<Run>): Promise<void> {
    const { store } = this.#ctx;
    const r = o.value;
    if (r.node !== null || FINISHED.has(r.state)) return;
    const { informer } = this.#ctx;
    await informer.sync();
    const nodes = informer.list<Node>("node").map((n) => n.value);
    const services = new Map(informer.list<Service>("service").map((s) => [s.key, s.value]));
    const instances = informer.list<Instance>("instance").map((i) => i.value);
    const scheduler = new Scheduler(
      new ClusterState(nodes.map(schedulerNode), placedInstances(instances, services)),
      this.#cursor,
    );
    const svc = services.get(serviceKey(r.tenant, r.app, r.service));
    const placement = scheduler.place({
      id: r.id,
      service: serviceKey(r.tenant, r.app, r.service),
      resources: r.spec.resources,
      criticality: svc?.spec.criticality ?? "normal",
      ...(svc?.spec.placement?.nodeSelector ? { nodeSelector: svc.spec.placement.nodeSelector } : {}),
      slug: r.spec.slug,
      ...(r.spec.runtime ? { runtime: r.spec.runtime } : {}),
    });
    this.#cursor = scheduler.cursor;
    const next: Run =
      placement.node === null
        ? { ...r, message: `waiting for a node: ${placement.message}` }
        : { ...r, node: placement.node, state: "starting", message: `placed on ${placement.node}` };
    if (next.message === r.message && next.node === r.node) return;
    try {
      await store.put("run", o.key, next, { expectRevision: o.revision });
    } catch (err) {
      if ((err as { code?: string }).code !== "conflict") throw err;
    }
  }

  /** Each job whose schedule fired since it was last looked at gets its run (once: the id is fixed). */
  async #fireSchedules(now: number, runs: StoredObject<Run>[]): Promise<void> {
    const { store } = this.#ctx;
    for (const o of byKey(this.#ctx.informer.list<Service>("service"))) {
      const svc = o.value;
      if (!svc.spec.jobs) continue;
      const app = await store.get<App>("app", appKey(svc.tenant, svc.app));
      if (!app || app.value.destroying || app.value.release === null) continue;
      const release = await store.get<Release>("release", releaseKey(svc.tenant, svc.app, svc.release));
      if (!release) continue;
      for (const [job, spec] of Object.entries(svc.spec.jobs)) {
        const slot = lastFire(spec.schedule, Date.parse(release.value.createdAt), now);
        if (slot === undefined) continue;
        const id = scheduledRunId(svc.tenant, svc.app, job, slot);
        if (runs.some((r) => r.key === id) || (await store.get("run", id))) continue;
        await this.#fire(svc, job, spec, slot, id, runs);
      }
    }
  }

  async #fire(svc: Service, job: string, spec: JobSpec, slot: number, id: string, runs: StoredObject<Run>[]) {
    const active = runs
      .map((o) => o.value)
      .filter((r) => r.tenant === svc.tenant && r.app === svc.app && r.job === job && !FINISHED.has(r.state));
    const request: RunRequest = {
      tenant: svc.tenant,
      app: svc.app,
      service: svc.name,
      command: spec.command,
      timeoutMs: spec.timeoutMs,
      kind: "job",
      release: svc.release,
      id,
      job,
      scheduledAt: this.#iso(slot),
    };
    try {
      if (active.length > 0 && spec.concurrency === "forbid") {
        const skipped: Run = {
          ...(await this.#skeleton(request)),
          state: "skipped",
          message: `run ${active[0].id} still runs (concurrency: forbid)`,
          finishedAt: this.#iso(),
        };
        await this.#ctx.store.put("run", id, skipped, { expectRevision: 0 });
        await this.#recordEnd(skipped);
        return;
      }
      if (spec.concurrency === "replace")
        for (const r of active)
          await this.stopRun(r.tenant, r.app, r.id, "stopped", `replaced by ${id} (concurrency: replace)`);
      await this.startRun(request);
    } catch (err) {
      // Another server (or the tick before a restart) wrote this time's run: it has one.
      if ((err as { code?: string }).code !== "conflict") throw err;
    }
  }

  /** A run record that never starts (a skipped time). */
  async #skeleton(r: RunRequest): Promise<Run> {
    return {
      id: r.id!,
      tenant: r.tenant,
      app: r.app,
      service: r.service!,
      release: r.release!,
      kind: r.kind,
      job: r.job,
      scheduledAt: r.scheduledAt,
      command: r.command,
      node: null,
      state: "pending",
      message: "",
      timeoutMs: r.timeoutMs,
      createdAt: this.#iso(),
      spec: {
        slug: "",
        command: r.command,
        env: {},
        resources: { cpu: 0, memory: 0 },
        health: { kind: "process", intervalMs: 1000, timeoutMs: 1000, failures: 1, startupMs: 1000 },
      },
    };
  }

  /** Deletes each job's finished runs beyond its `history` (the newest are kept). */
  async #pruneHistory(runs: StoredObject<Run>[], now: number): Promise<void> {
    const { store } = this.#ctx;
    const keep = new Map<string, number>();
    for (const o of this.#ctx.informer.list<Service>("service"))
      for (const [job, spec] of Object.entries(o.value.spec.jobs ?? {}))
        keep.set(`${o.value.tenant}/${o.value.app}/job:${job}`, spec.history);
    const apps = new Map((await store.list<App>("app")).items.map((o) => [o.key, o.value]));
    const groups = new Map<string, StoredObject<Run>[]>();
    for (const o of runs) {
      const r = o.value;
      const app = apps.get(appKey(r.tenant, r.app));
      // The app is gone (or going): its runs stop, then go.
      if ((!app || app.destroying) && !FINISHED.has(r.state)) {
        if (!r.stop) await this.stopRun(r.tenant, r.app, r.id, "stopped", "its app is being destroyed");
        continue;
      }
      // A finished run stays while its last lines ship.
      if (!FINISHED.has(r.state) || now - Date.parse(r.finishedAt ?? r.createdAt) <= LOG_GRACE_MS) continue;
      if (!app) {
        await store.delete("run", o.key).catch(() => {});
        continue;
      }
      const key = `${r.tenant}/${r.app}/${r.job ? `job:${r.job}` : "runs"}`;
      groups.set(key, [...(groups.get(key) ?? []), o]);
    }
    for (const [key, list] of groups) {
      const limit = key.endsWith("/runs") ? KEPT_RUNS : (keep.get(key) ?? 0);
      const newest = (o: StoredObject<Run>) => o.value.scheduledAt ?? o.value.createdAt;
      const sorted = list.sort((a, b) => newest(b).localeCompare(newest(a)));
      // A job's newest run stays even past the job's end: it marks its time as fired.
      for (const o of sorted.slice(Math.max(limit, 1))) await store.delete("run", o.key).catch(() => {});
    }
  }

  /**
   * The release phase of a new release: each service with `release:` runs
   * its command once, in name order, before anything rolls out. Throws
   * (the deploy fails, nothing rolls out) when one does not succeed.
   */
  async releasePhase(deploy: Deploy, release: Release, step: (line: string) => void): Promise<void> {
    for (const [service, spec] of Object.entries(release.services).sort(([a], [b]) => a.localeCompare(b))) {
      if (!spec.release) continue;
      step(
        `${service}: release phase: ${spec.release.command} (deadline ${Math.round(spec.release.timeoutMs / 1000)}s)`,
      );
      const run = await this.startRun({
        tenant: release.tenant,
        app: release.app,
        service,
        command: spec.release.command,
        timeoutMs: spec.release.timeoutMs,
        kind: "release",
        release: release.version,
        deploy: deploy.id,
      });
      const { end, shown } = await this.#followOutput(run, service, deploy.id, step);
      // No line reached this server's log store: its last lines as the node reported them, as one step
      // (the header flush, each line under it: `herd deploy` indents them).
      const tail = end.logTail ?? [];
      if (shown === 0 && tail.length > 0)
        step(
          [`${service}: release phase output:`, ...tail.map((line) => `  ${service} release | ${line}`)].join(
            "\n",
          ),
        );
      if (end.state !== "succeeded") {
        const message = `release phase of ${service} (${spec.release.command}) ${end.state === "timed_out" ? "timed out" : "failed"}: ${end.message}; v${release.version} is not rolled out (run ${end.id})`;
        throw new HerdError("invalid", message, [
          { field: `services.${service}.release`, message: end.message },
        ]);
      }
      step(`${service}: release phase succeeded`);
    }
  }

  /**
   * Waits for a release phase's run to end, showing its output in the deploy's
   * log as it reaches the log store: a step "web: release phase output:", then
   * each line under it. Once the run has ended, waits (OUTPUT_SETTLE_MS at
   * most) for the line the node reported last. `shown`: the lines shown.
   */
  async #followOutput(
    run: Run,
    service: string,
    deploy: string,
    step: (line: string) => void,
  ): Promise<{ end: Run; shown: number }> {
    let after = 0;
    let shown = 0;
    let last: string | undefined;
    const show = () => {
      for (const { seq, line } of this.#output?.(run, after) ?? []) {
        if (shown++ === 0) step(`${service}: release phase output:`);
        this.#ctx.deployLogs.append(deploy, "build", `  ${service} release | ${line}`);
        after = seq;
        last = line;
      }
    };
    for (;;) {
      const r = (await this.#get(run.id)).value;
      show();
      if (FINISHED.has(r.state)) {
        // Real time, as the waits are: the lines ship on the node's timer, not the controller's clock.
        const settle = Date.now() + OUTPUT_SETTLE_MS;
        const lastLine = r.logTail?.at(-1);
        while (this.#output && lastLine !== undefined && last !== lastLine && Date.now() < settle) {
          await new Promise((resolve) => setTimeout(resolve, 100));
          show();
        }
        return { end: r, shown };
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  /** Whether a run placed on `node` uses the slug (its agent may fetch it). */
  async runsSlug(node: string, digest: string): Promise<boolean> {
    await this.#ctx.informer.sync();
    return this.#ctx.informer.by<Run>("run", "node", node).some((o) => o.value.spec.slug === digest);
  }
}

/**
 * The command as the agent runs it: its shell writes the exit code to the
 * run's data dir as it ends, so an agent that adopts the run after a restart
 * (not its parent) still learns it (agent/run-exit.ts).
 */
export function recordingExit(command: string): string {
  return `(${command}
); code=$?; echo $code > "$HERD_DATA_DIR/${EXIT_CODE_FILE}"; exit $code`;
}

/** A scheduled time's run id: the same job and time always give the same id. */
export function scheduledRunId(tenant: string, app: string, job: string, slot: number): string {
  return `job-${createHash("sha256").update(`${tenant}/${app}/${job}/${slot}`).digest("hex").slice(0, 20)}`;
}

/** Informer objects in key order, as a store list gives them. */
function byKey<T>(objects: StoredObject<T>[]): StoredObject<T>[] {
  return objects.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}
