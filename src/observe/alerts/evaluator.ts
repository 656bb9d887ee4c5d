/**
 * The alert evaluator: every interval, each rule's PromQL is evaluated as an
 * instant query and every label set it returns moves through
 *
 *   inactive ─► pending ─(held `for`)─► firing ─(gone from the result)─► resolved (forgotten)
 *                  └─(gone before `for`)─► inactive, nothing recorded
 *
 * Firing and resolved are events (AlertFiring warning, AlertResolved normal)
 * and webhook notifications (unless silenced), and are handed to listeners
 * (`on`), the in-process way for controllers to act on alerts.
 *
 *   rules: built-in (defaults.ts) ∪ alert_rule objects ∪ herd.yaml `alerts:` of each app's serving release
 *   instantQuery(tsdb) ─► label sets ─► state machine ─► events, listeners, WebhookNotifier
 *   state (active alerts + the notifier's outbox) ─► <data>/alerts/state.json, read back at start
 *
 * Where an alert belongs: an API or herd.yaml rule's tenant; a built-in
 * rule's alerts belong to the tenant in their `tenant` label, else to the
 * platform (the `default` tenant's receivers and silences). A built-in
 * rule's alert naming an app that is destroyed (or being destroyed) is
 * resolved at once, without waiting for its series to age out.
 */

import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { Gauge, type Registry } from "prom-client";
import type { Clock } from "../../common/clock.ts";
import type { Logger } from "../../common/log.ts";
import { Rounds } from "../../common/rounds.ts";
import type { EventInput } from "../../controllers/events.ts";
import {
  type AlertRule,
  type AlertRuleObject,
  expandTemplate,
  forMs,
  formatValue,
  matchesAll,
  type Receiver,
  ruleExpr,
  type Severity,
  type Silence,
} from "../../model/alerts.ts";
import type { App, Release } from "../../model/objects.ts";
import { releaseKey } from "../../model/objects.ts";
import type { Store } from "../../store/store.ts";
import { dropName, instantQuery, type Sample } from "../promql/engine.ts";
import type { Expr } from "../promql/parser.ts";
import { scopeToTenant } from "../promql/tenancy.ts";
import { type Labels, labelsKey } from "../tsdb/labels.ts";
import type { Tsdb } from "../tsdb/tsdb.ts";
import { DEFAULT_RULES } from "./defaults.ts";
import { type Delivery, type NotifierOptions, WebhookNotifier } from "./notifier.ts";

/** One label set of one rule that is pending or firing. */
export interface ActiveAlert {
  /** Hash of the rule's key and the labels: the same label set of the same rule has the same one. */
  fingerprint: string;
  rule: string;
  /** Which rule: `default/NAME`, `api/TENANT/NAME`, `app/TENANT/APP/NAME`. */
  ruleKey: string;
  tenant?: string;
  app?: string;
  severity: Severity;
  state: "pending" | "firing";
  labels: Labels;
  annotations: Record<string, string>;
  value: number;
  /** When the condition started to hold (ms). */
  activeAt: number;
  firedAt?: number;
  /** The id of a silence that matches it now. */
  silencedBy?: string;
  /** Whether its firing notification was queued (then its resolution is sent too). */
  notified: boolean;
}

/** What listeners get when an alert fires or resolves. */
export interface AlertTransition {
  status: "firing" | "resolved";
  alert: ActiveAlert;
  at: number;
}

/** How a rule's last evaluation went. */
export interface RuleHealth {
  lastEvaluation: string | null;
  lastError: string | null;
  durationMs: number;
}

export interface AlertEvaluatorOptions {
  store: Store;
  tsdb: Tsdb;
  /** Records events (the EventRecorder). */
  events: { record(e: EventInput): Promise<unknown> };
  clock: Clock;
  logger: Logger;
  /** Where active alerts and the outbox are kept across restarts; none: memory only. */
  stateFile?: string;
  /** How often rules are evaluated (default 15 s). */
  intervalMs?: number;
  /** The built-in rules (default DEFAULT_RULES). */
  defaults?: readonly AlertRule[];
  notifier?: NotifierOptions;
  /** A receiver's (`<tenant>/<name>`) webhook headers with their values, decrypted for one delivery. */
  receiverHeaders?: (receiver: string) => Promise<Record<string, string>>;
  /** Shown to receivers as externalURL. */
  externalUrl?: string;
  /** Where to export herd_alerts and herd_alert_deliveries (the API server's /metrics). */
  registry?: Registry;
}

interface StateFile {
  version: 1;
  alerts: ActiveAlert[];
  outbox: Delivery[];
}

const EXPIRED_SILENCE_KEPT_MS = 24 * 3600_000;
/** Most alerts one rule makes; past it the rule's health says so. */
export const MAX_ALERTS_PER_RULE = 500;
/** Most rules a tenant may have (API and herd.yaml together); past it the API says 409 and the rest are not evaluated. */
export const MAX_RULES_PER_TENANT = 100;
/** The platform's tenant: a built-in rule replaced there (by a platform admin) still sees every tenant. */
const PLATFORM_TENANT = "default";
const BUILT_IN = new Set(DEFAULT_RULES.map((r) => r.name));

/** A built-in rule, or one that replaces a built-in for the platform. */
const isBuiltIn = (rule: AlertRule): boolean =>
  rule.source === "default" ||
  (rule.tenant === PLATFORM_TENANT && rule.source === "api" && BUILT_IN.has(rule.name));

/**
 * What a rule evaluates: a tenant's rules see only the tenant's series (every
 * selector gets `tenant="…"`); the `default` tenant's rules also see the
 * platform's own series (no tenant label), never another tenant's; the
 * built-ins, and a built-in replaced in `default` by a platform admin, see all.
 */
export function ruleQuery(rule: AlertRule): Expr {
  const expr = ruleExpr(rule);
  const platform = isBuiltIn(rule) || !rule.tenant;
  if (platform) return expr;
  return scopeToTenant(expr, rule.tenant as string, rule.tenant === PLATFORM_TENANT);
}

const ruleKeyOf = (r: AlertRule): string =>
  r.source === "default"
    ? `default/${r.name}`
    : r.app
      ? `app/${r.tenant}/${r.app}/${r.name}`
      : `api/${r.tenant}/${r.name}`;

export class AlertEvaluator {
  readonly notifier: WebhookNotifier;
  /** Shown to receivers as externalURL (the server sets it once it listens). */
  externalUrl: string;
  readonly #o: AlertEvaluatorOptions;
  readonly #active = new Map<string, ActiveAlert>();
  readonly #health = new Map<string, RuleHealth>();
  readonly #listeners = new Set<(t: AlertTransition) => void>();
  /** herd.yaml rules of the release each app serves, by app key. */
  readonly #releaseRules = new Map<string, { version: number; rules: AlertRule[] }>();
  readonly #rounds = new Rounds(
    () => this.#round(),
    (err) => this.#o.logger.warn("alert evaluation failed", { err }),
  );
  #saveQueued = false;
  #stopped = false;

  constructor(options: AlertEvaluatorOptions) {
    this.#o = options;
    this.externalUrl = options.externalUrl ?? "";
    this.notifier = new WebhookNotifier({
      ...options.notifier,
      onChange: () => this.#queueSave(),
      headers: options.receiverHeaders,
    });
    this.#load();
    if (options.registry) this.#export(options.registry);
  }

  /** Evaluates every interval (default 15 s) and delivers notifications; again after stop (a new term as leader). */
  start(): void {
    this.#stopped = false;
    this.notifier.start();
    this.#rounds.start(this.#o.intervalMs ?? 15_000);
  }

  /** Stops evaluating and delivering, lets a round in flight finish, writes the state one last time. */
  async stop(): Promise<void> {
    const rounds = this.#rounds.stop();
    this.notifier.stop();
    await rounds;
    this.#save();
    this.#stopped = true;
  }

  /** Calls `listener` for every alert that fires or resolves; returns the unsubscribe. */
  on(listener: (t: AlertTransition) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Pending and firing alerts; with a tenant, only those that belong to it (the platform's count as `default`'s). */
  active(tenant?: string): ActiveAlert[] {
    const all = [...this.#active.values()].map((a) => ({ ...a }));
    return tenant === undefined ? all : all.filter((a) => (a.tenant ?? "default") === tenant);
  }

  health(ruleKey: string): RuleHealth | undefined {
    return this.#health.get(ruleKey);
  }

  /** Every rule in force: built-ins (minus those replaced), API rules, herd.yaml rules of serving releases. */
  async rules(): Promise<(AlertRule & { key: string; overLimit?: boolean })[]> {
    const { store } = this.#o;
    const api = (await store.list<AlertRuleObject>("alert_rule")).items.map((o) => o.value);
    const replaced = new Set(api.filter((r) => r.tenant === "default").map((r) => r.name));
    const out: AlertRule[] = (this.#o.defaults ?? DEFAULT_RULES).filter((r) => !replaced.has(r.name));
    for (const r of api) {
      const { createdAt: _c, updatedAt: _u, ...rule } = r;
      out.push({ ...rule, source: "api" });
    }
    const seen = new Set<string>();
    for (const o of (await store.list<App>("app")).items) {
      const app = o.value;
      if (app.release === null || app.destroying) continue;
      seen.add(o.key);
      let cached = this.#releaseRules.get(o.key);
      if (cached?.version !== app.release) {
        const rel = await store.get<Release>("release", releaseKey(app.tenant, app.name, app.release));
        const rules = Object.entries(rel?.value.alerts ?? {}).map(
          ([name, body]): AlertRule => ({
            ...body,
            name,
            tenant: app.tenant,
            app: app.name,
            source: "herd.yaml",
          }),
        );
        cached = { version: app.release, rules };
        this.#releaseRules.set(o.key, cached);
      }
      out.push(...cached.rules);
    }
    for (const k of this.#releaseRules.keys()) if (!seen.has(k)) this.#releaseRules.delete(k);
    // A tenant's rules past the limit (API rules first, then herd.yaml in order) are kept but not evaluated.
    const perTenant = new Map<string, number>();
    return out
      .filter((r) => !r.disabled)
      .map((r) => {
        if (r.source === "default" || !r.tenant) return { ...r, key: ruleKeyOf(r) };
        const n = (perTenant.get(r.tenant) ?? 0) + 1;
        perTenant.set(r.tenant, n);
        return { ...r, key: ruleKeyOf(r), ...(n > MAX_RULES_PER_TENANT ? { overLimit: true } : {}) };
      });
  }

  /** One evaluation round at the clock's now; rounds never overlap. */
  evaluate(): Promise<void> {
    return this.#rounds.run();
  }

  async #round(): Promise<void> {
    const { store, clock } = this.#o;
    const now = clock.now();
    const rules = await this.rules();
    const silences: Silence[] = [];
    for (const o of (await store.list<Silence>("alert_silence")).items) {
      const until = Date.parse(o.value.until);
      if (Date.parse(o.value.startsAt) <= now && now < until) silences.push(o.value);
      // Expired silences stay listed for a day (what was silenced, and why), then go.
      else if (until < now - EXPIRED_SILENCE_KEPT_MS)
        await store.delete("alert_silence", o.key, { expectRevision: o.revision }).catch(() => {});
    }
    const receivers = (await store.list<Receiver>("alert_receiver")).items.map((o) => o.value);
    // A destroyed app's series linger for the lookback (5 min): its built-in alerts resolve at once instead.
    const apps = new Set(
      (await store.list<App>("app")).items.filter((o) => !o.value.destroying).map((o) => o.key),
    );
    const live = new Set<string>();
    let changed = false;

    for (const rule of rules) {
      const started = Date.now();
      let samples: Sample[];
      try {
        if (rule.overLimit) {
          throw new Error(
            `not evaluated: tenant ${rule.tenant} has more than ${MAX_RULES_PER_TENANT} rules (API and herd.yaml)`,
          );
        }
        const v = instantQuery(this.#o.tsdb, ruleQuery(rule), now);
        samples =
          v.type === "vector" ? v.samples : v.type === "scalar" ? [{ labels: {}, value: v.value }] : [];
        this.#health.set(rule.key, {
          lastEvaluation: new Date(now).toISOString(),
          lastError: null,
          durationMs: Date.now() - started,
        });
      } catch (err) {
        // A rule that cannot be evaluated keeps its alerts as they are (no flapping to resolved).
        this.#health.set(rule.key, {
          lastEvaluation: new Date(now).toISOString(),
          lastError: (err as Error).message,
          durationMs: Date.now() - started,
        });
        for (const a of this.#active.values()) if (a.ruleKey === rule.key) live.add(a.fingerprint);
        continue;
      }
      if (samples.length > MAX_ALERTS_PER_RULE) {
        // A rule that matches everything must not flood the events and the receivers.
        (this.#health.get(rule.key) as RuleHealth).lastError =
          `returned ${samples.length} series; only the first ${MAX_ALERTS_PER_RULE} are alerts (aggregate with sum by/max by)`;
        samples = samples.slice(0, MAX_ALERTS_PER_RULE);
      }
      const wait = forMs(rule);
      for (const s of samples) {
        const labels: Labels = {
          ...dropName(s.labels),
          ...rule.labels,
          ...(rule.app ? { app: rule.app } : {}),
          alertname: rule.name,
          severity: rule.severity ?? "warning",
        };
        if (isBuiltIn(rule) && labels.app && labels.tenant && !apps.has(`${labels.tenant}/${labels.app}`))
          continue;
        const fingerprint = createHash("sha256")
          .update(`${rule.key}|${labelsKey(labels)}`)
          .digest("hex")
          .slice(0, 16);
        live.add(fingerprint);
        let a = this.#active.get(fingerprint);
        if (!a) {
          a = {
            fingerprint,
            rule: rule.name,
            ruleKey: rule.key,
            ...(rule.source === "default"
              ? labels.tenant
                ? { tenant: labels.tenant }
                : {}
              : { tenant: rule.tenant }),
            ...((rule.app ?? labels.app) ? { app: rule.app ?? labels.app } : {}),
            severity: rule.severity ?? "warning",
            state: "pending",
            labels,
            annotations: {},
            value: s.value,
            activeAt: now,
            notified: false,
          };
          this.#active.set(fingerprint, a);
          changed = true;
        }
        a.value = s.value;
        a.annotations = Object.fromEntries(
          Object.entries(rule.annotations ?? {}).map(([k, t]) => [k, expandTemplate(t, labels, s.value)]),
        );
        const silence = silences.find(
          (x) => x.tenant === (a.tenant ?? "default") && matchesAll(x.matchers, labels),
        );
        a.silencedBy = silence?.id;
        if (a.state === "pending" && now - a.activeAt >= wait) {
          a.state = "firing";
          a.firedAt = now;
          changed = true;
          await this.#transition("firing", a, now);
        }
        // A firing alert is notified once, as soon as no silence covers it.
        if (a.state === "firing" && !a.notified && !a.silencedBy) {
          a.notified = true;
          changed = true;
          this.#notify("firing", a, now, receivers);
        }
      }
    }

    for (const a of [...this.#active.values()]) {
      if (live.has(a.fingerprint)) continue;
      this.#active.delete(a.fingerprint);
      changed = true;
      if (a.state !== "firing") continue;
      await this.#transition("resolved", a, now);
      if (a.notified) this.#notify("resolved", a, now, receivers);
    }
    if (changed) this.#queueSave();
  }

  async #transition(status: "firing" | "resolved", a: ActiveAlert, now: number): Promise<void> {
    const summary = a.annotations.summary ?? "";
    const silenced =
      status === "firing" && a.silencedBy ? ` (silenced by ${a.silencedBy}: no notification)` : "";
    await this.#o.events.record({
      ...(a.tenant ? { tenant: a.tenant } : {}),
      ...(a.app ? { app: a.app } : {}),
      ...(a.labels.service && a.app ? { service: a.labels.service } : {}),
      ...(a.labels.node ? { node: a.labels.node } : {}),
      reason: status === "firing" ? "AlertFiring" : "AlertResolved",
      type: status === "firing" ? "warning" : "normal",
      message: `alert ${a.rule} ${status} [${a.severity}]${summary ? `: ${summary}` : ""} (value ${formatValue(a.value)})${silenced}`,
      details: [
        ...Object.entries(a.labels).map(([k, v]) => `${k}=${v}`),
        `value=${a.value}`,
        ...(a.silencedBy && status === "firing" ? [`silenced_by=${a.silencedBy}`] : []),
      ],
    });
    for (const l of this.#listeners) {
      try {
        l({ status, alert: { ...a }, at: now });
      } catch (err) {
        this.#o.logger.warn("alert listener failed", { err });
      }
    }
  }

  #notify(status: "firing" | "resolved", a: ActiveAlert, now: number, receivers: Receiver[]): void {
    const tenant = a.tenant ?? "default";
    for (const r of receivers) {
      if (r.tenant !== tenant) continue;
      if (r.severities && !r.severities.includes(a.severity)) continue;
      this.notifier.enqueue(
        { key: `${r.tenant}/${r.name}`, url: r.url },
        webhookPayload(r.name, status, a, now, this.externalUrl),
      );
    }
  }

  /** Gauges read when /metrics is scraped: active alerts, and deliveries per receiver. */
  #export(registry: Registry): void {
    const active = () => [...this.#active.values()];
    new Gauge({
      name: "herd_alerts",
      help: "Active alerts by rule, state (pending, firing) and severity.",
      labelNames: ["alertname", "state", "severity"],
      registers: [registry],
      collect() {
        this.reset();
        for (const a of active()) this.inc({ alertname: a.rule, state: a.state, severity: a.severity });
      },
    });
    const notifier = this.notifier;
    new Gauge({
      name: "herd_alert_deliveries",
      help: "Webhook deliveries per receiver (tenant/name) since the server started, by outcome: delivered, failed_attempts, dropped, queued.",
      labelNames: ["receiver", "outcome"],
      registers: [registry],
      collect() {
        this.reset();
        for (const [receiver, s] of notifier.statuses()) {
          this.set({ receiver, outcome: "delivered" }, s.delivered);
          this.set({ receiver, outcome: "failed_attempts" }, s.failedAttempts);
          this.set({ receiver, outcome: "dropped" }, s.dropped);
          this.set({ receiver, outcome: "queued" }, s.queued);
        }
      },
    });
  }

  #load(): void {
    if (!this.#o.stateFile) return;
    let state: StateFile;
    try {
      state = JSON.parse(readFileSync(this.#o.stateFile, "utf8")) as StateFile;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT")
        this.#o.logger.warn("alert state unreadable; starting empty", { err });
      return;
    }
    for (const a of state.alerts ?? []) this.#active.set(a.fingerprint, a);
    this.notifier.restore(state.outbox ?? []);
  }

  #queueSave(): void {
    if (this.#saveQueued || !this.#o.stateFile) return;
    this.#saveQueued = true;
    setImmediate(() => {
      this.#saveQueued = false;
      this.#save();
    });
  }

  /** Writes the state file (write a copy, then rename: a crash leaves the old or the new one). */
  #save(): void {
    const file = this.#o.stateFile;
    if (!file || this.#stopped) return;
    const state: StateFile = {
      version: 1,
      alerts: [...this.#active.values()],
      outbox: this.notifier.pending(),
    };
    try {
      mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
      writeFileSync(`${file}.tmp`, JSON.stringify(state));
      renameSync(`${file}.tmp`, file);
    } catch (err) {
      this.#o.logger.warn("could not save the alert state", { err });
    }
  }
}

/** An Alertmanager-webhook-like body (version 4) for one alert. */
export function webhookPayload(
  receiver: string,
  status: "firing" | "resolved",
  a: ActiveAlert,
  now: number,
  externalUrl: string,
) {
  const alert = {
    status,
    labels: a.labels,
    annotations: a.annotations,
    startsAt: new Date(a.firedAt ?? a.activeAt).toISOString(),
    endsAt: status === "resolved" ? new Date(now).toISOString() : "0001-01-01T00:00:00Z",
    generatorURL: externalUrl ? `${externalUrl}/api/v1/alerts` : "",
    fingerprint: a.fingerprint,
    value: a.value,
  };
  return {
    version: "4",
    groupKey: a.fingerprint,
    status,
    receiver,
    groupLabels: { alertname: a.rule },
    commonLabels: a.labels,
    commonAnnotations: a.annotations,
    externalURL: externalUrl,
    truncatedAlerts: 0,
    alerts: [alert],
  };
}
