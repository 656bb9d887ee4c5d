/**
 * Health checks in the deploy log: while a deploy rolls out, each new outcome
 * of a new instance's health check goes into that deploy's log as soon as its
 * agent reports it, so `herd deploy` shows why an instance is not healthy
 * while it waits, not only at the end.
 *
 *   heartbeat ─► status.probes (agent/probe-attempts.ts: each different outcome once, repeats counted)
 *      ─► instance on this node, its service rolling out this release with a deploy
 *      ─► deploy log: "web hello-web-x1: check 1 failed: GET /health answered 500: db not ready"
 *                      + the instance's last log lines (a new failing outcome only)
 *                     "web hello-web-x1: checks 2–26 failed the same way"  (at most every REPEAT_MS)
 *                     "web hello-web-x1: check 27 passed"                  (after failures only)
 *
 * What was written is remembered in memory per instance (the records carry
 * their check numbers, so a heartbeat seen twice writes nothing twice). After
 * a server restart a record may be written again; nothing is lost.
 */

import type { Clock } from "../common/clock.ts";
import type { Instance, Service } from "../model/objects.ts";
import { serviceKey } from "../model/objects.ts";
import type { Heartbeat, InstanceStatus, ProbeAttempt } from "../model/protocol.ts";
import type { Store } from "../store/store.ts";
import type { DeployLogs } from "./deploy-log.ts";

/** Repeats of one failing outcome are summed up in the deploy log at most this often per instance. */
export const REPEAT_MS = 5000;
/**
 * An instance's first checks may find nothing listening yet (the agent checks
 * a new instance every few ms at first): refused connections from check 1 on
 * are news only once they have lasted this long, or a different failure
 * follows them. A start that passes within it writes nothing.
 */
export const START_GRACE_MS = 1000;
/** Instances not heard of for this long are forgotten. */
const FORGET_MS = 10 * 60_000;

/** What was written about one instance's checks. */
interface Written {
  generation: number;
  /** The check number of the record last written, and the count it had then. */
  attempt: number;
  count: number;
  /** When a line was last written (clock ms). */
  at: number;
  /** Whether a failure was written (a pass is worth a line only after one). */
  failed: boolean;
}

export class ProbeLog {
  readonly #store: Store;
  readonly #logs: DeployLogs;
  readonly #clock: Clock;
  readonly #written = new Map<string, Written>();

  constructor(store: Store, logs: DeployLogs, clock: Clock) {
    this.#store = store;
    this.#logs = logs;
    this.#clock = clock;
  }

  /** Writes what is new in a heartbeat's probe records to the deploys they belong to. */
  async record(node: string, hb: Pick<Heartbeat, "instances">): Promise<void> {
    const now = this.#clock.now();
    for (const [id, w] of this.#written) if (now - w.at > FORGET_MS) this.#written.delete(id);
    for (const status of hb.instances) {
      if (!status.probes?.length) continue;
      const lines = this.#newLines(status, now);
      if (lines.length === 0) continue;
      const target = await this.#deployOf(node, status);
      if (!target) continue;
      for (const line of lines) this.#logs.append(target.deploy, "health", `${target.who}: ${line}`);
    }
  }

  /** The lines a status adds to what was written about its instance, and notes them as written. */
  #newLines(status: InstanceStatus, now: number): string[] {
    const records = status.probes ?? [];
    let w = this.#written.get(status.id);
    if (!w || w.generation !== status.generation) {
      w = { generation: status.generation, attempt: 0, count: 0, at: 0, failed: false };
      this.#written.set(status.id, w);
    }
    const out: string[] = [];
    for (const r of records) {
      if (r.attempt + r.count <= w.attempt + w.count) continue; // nothing new in it
      if (r.attempt !== w.attempt) {
        // An outcome not written yet. A pass is news only after failures.
        if (r.ok) {
          if (w.failed) out.push(`check ${r.attempt} passed${r.status ? ` (${r.status})` : ""}`);
          Object.assign(w, { attempt: r.attempt, count: r.count, at: now });
          continue;
        }
        const next = records[records.indexOf(r) + 1];
        if (isStarting(r) && (next === undefined || next.ok)) {
          // Not listening yet, briefly: wait (next heartbeat), or say nothing when it then passed.
          if (next !== undefined) Object.assign(w, { attempt: r.attempt, count: r.count });
          continue;
        }
        out.push(firstLine(r));
        Object.assign(w, { attempt: r.attempt, count: 1, at: now, failed: true });
        if (r.count === 1) continue;
      }
      // More of the same outcome: repeats of a failure are summed up now and then, or at once
      // when a different outcome follows; more passes say nothing.
      const followed = r !== records.at(-1);
      if (!r.ok && !followed && now - w.at < REPEAT_MS) continue;
      if (!r.ok) out.push(repeatLine(r, w.attempt + w.count));
      Object.assign(w, { count: r.count, at: r.ok ? w.at : now });
    }
    return out;
  }

  /** The deploy rolling out this instance's release on this node, and how to name the instance. */
  async #deployOf(
    node: string,
    status: InstanceStatus,
  ): Promise<{ deploy: string; who: string } | undefined> {
    const i = (await this.#store.get<Instance>("instance", status.id))?.value;
    if (!i || i.node !== node || i.generation !== status.generation) return undefined;
    const svc = (await this.#store.get<Service>("service", serviceKey(i.tenant, i.app, i.service)))?.value;
    if (!svc?.deploy || svc.release !== i.release) return undefined;
    return { deploy: svc.deploy, who: `${i.service} ${i.id}` };
  }
}

/** A new instance's first checks finding nothing that answers, for less than START_GRACE_MS. */
function isStarting(r: ProbeAttempt): boolean {
  return (
    r.attempt === 1 && r.status === undefined && Date.parse(r.lastAt) - Date.parse(r.firstAt) < START_GRACE_MS
  );
}

/** "check 1 failed: GET /health answered 500: db not ready" and the log lines under it. */
function firstLine(r: ProbeAttempt): string {
  const head = `check ${r.attempt} failed: ${r.message}${r.body ? `: ${r.body}` : ""}`;
  if (!r.logTail?.length) return head;
  return [`${head}; its last log lines:`, ...r.logTail.map((l) => `  ${l}`)].join("\n");
}

/** "checks 2–26 failed the same way (26 in a row over 4.8 s)": the record's checks from check `from`. */
function repeatLine(r: ProbeAttempt, from: number): string {
  const to = r.attempt + r.count - 1;
  const seconds = Math.round((Date.parse(r.lastAt) - Date.parse(r.firstAt)) / 100) / 10;
  const range = from === to ? `check ${to}` : `checks ${from}–${to}`;
  return `${range} failed the same way (${r.count} in a row over ${seconds} s)`;
}
