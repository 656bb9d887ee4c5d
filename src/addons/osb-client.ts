/**
 * A client of the Open Service Broker API (v2.17): catalog, provision,
 * last_operation, bind, unbind, deprovision. Every request goes through
 * herd's one URL guard (common/url-guard.ts): a broker on an internal
 * address is reached only when `--allow-fetch` allows its range.
 *
 *   catalog()                 GET    /v2/catalog
 *   provision(id, …)          PUT    /v2/service_instances/:id?accepts_incomplete=true   200/201 done, 202 async
 *   update(id, …)             PATCH  /v2/service_instances/:id?accepts_incomplete=true   200 done, 202 async
 *   lastOperation(id, …)      GET    /v2/service_instances/:id/last_operation            in progress|succeeded|failed
 *   bind(id, bid, …)          PUT    /v2/service_instances/:id/service_bindings/:bid     200/201 credentials
 *   unbind(id, bid, …)        DELETE /v2/service_instances/:id/service_bindings/:bid     200, 410 (gone) is fine
 *   deprovision(id, …)        DELETE /v2/service_instances/:id?accepts_incomplete=true   200/410 done, 202 async
 */

import { HerdError } from "../common/errors.ts";
import type { UrlGuard } from "../common/url-guard.ts";
import type { BrokerPlanEntry } from "../model/addon.ts";
import { compileSchema } from "./parameters.ts";

export const OSB_API_VERSION = "2.17";

export type BrokerPlan = BrokerPlanEntry;

export interface BrokerService {
  id: string;
  name: string;
  description: string;
  bindable: boolean;
  planUpdateable?: boolean;
  plans: BrokerPlan[];
}

/** Where a broker answers and how herd signs in (the password comes from the secret store). */
export interface BrokerEndpoint {
  url: string;
  user?: string;
  password?: string;
}

export interface Operation {
  /** false: the broker works on it; poll lastOperation. */
  done: boolean;
  operation?: string;
  dashboardUrl?: string;
}

export type OperationState = "in progress" | "succeeded" | "failed" | "gone";

/** A binding's credentials: what the app gets as secrets. */
export type Credentials = Record<string, unknown>;

/** A broker may take its time over a synchronous provision or bind; its catalog should be quick. */
const TIMEOUT_MS = 60_000;
const CATALOG_TIMEOUT_MS = 15_000;

export class OsbClient {
  readonly #b: BrokerEndpoint;
  readonly #guard: UrlGuard;

  constructor(broker: BrokerEndpoint, guard: UrlGuard) {
    this.#b = broker;
    this.#guard = guard;
  }

  async catalog(): Promise<BrokerService[]> {
    const { status, body } = await this.#call("GET", "/v2/catalog");
    if (status !== 200) throw this.#failed("GET /v2/catalog", status, body);
    return parseCatalog(body);
  }

  async provision(
    instanceId: string,
    o: { serviceId: string; planId: string; tenant: string; parameters?: Record<string, unknown> },
  ): Promise<Operation> {
    const { status, body } = await this.#call(
      "PUT",
      `/v2/service_instances/${enc(instanceId)}?accepts_incomplete=true`,
      {
        service_id: o.serviceId,
        plan_id: o.planId,
        organization_guid: o.tenant,
        space_guid: o.tenant,
        context: { platform: "herd", tenant: o.tenant },
        ...(o.parameters ? { parameters: o.parameters } : {}),
      },
    );
    // 200: it exists already, as asked (a provision tried again after a crash).
    if (status === 200 || status === 201) return { done: true, ...dashboard(body) };
    if (status === 202) return { done: false, ...operationOf(body), ...dashboard(body) };
    throw this.#failed("provision", status, body);
  }

  /** A plan change (and/or new parameters): 200 done, 202 followed through lastOperation. */
  async update(
    instanceId: string,
    o: {
      serviceId: string;
      planId: string;
      previousPlanId: string;
      tenant: string;
      parameters?: Record<string, unknown>;
    },
  ): Promise<Operation> {
    const { status, body } = await this.#call(
      "PATCH",
      `/v2/service_instances/${enc(instanceId)}?accepts_incomplete=true`,
      {
        service_id: o.serviceId,
        plan_id: o.planId,
        previous_values: { service_id: o.serviceId, plan_id: o.previousPlanId },
        context: { platform: "herd", tenant: o.tenant },
        ...(o.parameters ? { parameters: o.parameters } : {}),
      },
    );
    if (status === 200) return { done: true, ...dashboard(body) };
    if (status === 202) return { done: false, ...operationOf(body), ...dashboard(body) };
    throw this.#failed("update", status, body);
  }

  async deprovision(instanceId: string, o: { serviceId: string; planId: string }): Promise<Operation> {
    const { status, body } = await this.#call(
      "DELETE",
      `/v2/service_instances/${enc(instanceId)}?accepts_incomplete=true&${ids(o)}`,
    );
    if (status === 200 || status === 410) return { done: true };
    if (status === 202) return { done: false, ...operationOf(body) };
    throw this.#failed("deprovision", status, body);
  }

  /**
   * The state of the instance's last asynchronous operation; "gone" when the
   * broker does not know the instance (410, or 404): a deprovision that is
   * done, or a provision never received (herd crashed before asking).
   */
  async lastOperation(
    instanceId: string,
    o: { serviceId: string; planId: string; operation?: string },
  ): Promise<{ state: OperationState; description?: string; retryAfterS?: number }> {
    const q = `${ids(o)}${o.operation ? `&operation=${enc(o.operation)}` : ""}`;
    const res = await this.#call("GET", `/v2/service_instances/${enc(instanceId)}/last_operation?${q}`);
    if (res.status === 410 || res.status === 404) return { state: "gone" };
    if (res.status !== 200) throw this.#failed("last_operation", res.status, res.body);
    const b = res.body as { state?: unknown; description?: unknown };
    if (b.state !== "in progress" && b.state !== "succeeded" && b.state !== "failed")
      throw new HerdError(
        "unavailable",
        `broker ${this.#b.url} answered last_operation with state ${JSON.stringify(b.state)}`,
      );
    const retry = Number(res.retryAfter);
    return {
      state: b.state,
      ...(typeof b.description === "string" ? { description: b.description } : {}),
      ...(Number.isFinite(retry) && retry > 0 ? { retryAfterS: retry } : {}),
    };
  }

  async bind(
    instanceId: string,
    bindingId: string,
    o: { serviceId: string; planId: string; app: string; parameters?: Record<string, unknown> },
  ): Promise<Credentials> {
    const { status, body } = await this.#call(
      "PUT",
      `/v2/service_instances/${enc(instanceId)}/service_bindings/${enc(bindingId)}`,
      {
        service_id: o.serviceId,
        plan_id: o.planId,
        bind_resource: { app_guid: o.app },
        context: { platform: "herd", app: o.app },
        ...(o.parameters ? { parameters: o.parameters } : {}),
      },
    );
    if (status !== 200 && status !== 201) throw this.#failed("bind", status, body);
    const creds = (body as { credentials?: unknown }).credentials;
    if (creds === undefined) return {};
    if (typeof creds !== "object" || creds === null || Array.isArray(creds))
      throw new HerdError(
        "unavailable",
        `broker ${this.#b.url} answered bind with credentials not an object`,
      );
    return creds as Credentials;
  }

  async unbind(
    instanceId: string,
    bindingId: string,
    o: { serviceId: string; planId: string },
  ): Promise<void> {
    const { status, body } = await this.#call(
      "DELETE",
      `/v2/service_instances/${enc(instanceId)}/service_bindings/${enc(bindingId)}?${ids(o)}`,
    );
    if (status !== 200 && status !== 410) throw this.#failed("unbind", status, body);
  }

  async #call(
    method: string,
    path: string,
    body?: unknown,
  ): Promise<{ status: number; body: unknown; retryAfter?: string }> {
    const base = this.#b.url.replace(/\/+$/, "");
    const headers: Record<string, string> = {
      "x-broker-api-version": OSB_API_VERSION,
      accept: "application/json",
    };
    if (this.#b.user !== undefined)
      headers.authorization = `Basic ${Buffer.from(`${this.#b.user}:${this.#b.password ?? ""}`).toString("base64")}`;
    if (body !== undefined) headers["content-type"] = "application/json";
    const res = await this.#guard
      .fetch(`${base}${path}`, {
        method,
        headers,
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        timeoutMs: path === "/v2/catalog" ? CATALOG_TIMEOUT_MS : TIMEOUT_MS,
        maxBytes: 4 * 1024 * 1024,
      })
      .catch((err: Error) => {
        if (err instanceof HerdError) throw err;
        // A name that does not resolve, a refused connection, a timeout: the broker is unavailable.
        throw new HerdError(
          "unavailable",
          `broker ${this.#b.url} did not answer ${method} ${path.split("?")[0]}: ${err.message}`,
        );
      });
    const text = res.body.toString("utf8");
    let parsed: unknown = {};
    if (text.trim() !== "") {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = { description: text.slice(0, 200) };
      }
    }
    const retry = res.headers["retry-after"];
    return {
      status: res.status,
      body: parsed ?? {},
      ...(typeof retry === "string" ? { retryAfter: retry } : {}),
    };
  }

  #failed(what: string, status: number, body: unknown): HerdError {
    const b = (body ?? {}) as { error?: unknown; description?: unknown };
    const why = [b.error, b.description].filter((x) => typeof x === "string").join(": ");
    const message = `broker ${this.#b.url} refused ${what} (${status}${why ? `: ${why}` : ""})`;
    if (status === 401 || status === 403)
      return new HerdError("unavailable", `${message}; check the broker's user and password`);
    // The broker's 400/409/422 is about what was asked: the asker's error.
    if (status === 400 || status === 422) return new HerdError("invalid", message);
    if (status === 409) return new HerdError("conflict", message);
    return new HerdError("unavailable", message);
  }
}

const enc = encodeURIComponent;
const ids = (o: { serviceId: string; planId: string }) =>
  `service_id=${enc(o.serviceId)}&plan_id=${enc(o.planId)}`;
const operationOf = (body: unknown) => {
  const op = (body as { operation?: unknown }).operation;
  return typeof op === "string" ? { operation: op } : {};
};
const dashboard = (body: unknown) => {
  const u = (body as { dashboard_url?: unknown }).dashboard_url;
  return typeof u === "string" ? { dashboardUrl: u } : {};
};

/** The catalog's services and plans, checked: a broker's answer is input like any other. */
export function parseCatalog(body: unknown): BrokerService[] {
  const services = (body as { services?: unknown }).services;
  if (!Array.isArray(services))
    throw new HerdError("unavailable", "the broker's catalog has no services list");
  const str = (v: unknown, what: string): string => {
    if (typeof v !== "string" || v === "")
      throw new HerdError("unavailable", `the broker's catalog: ${what} is not a non-empty string`);
    return v;
  };
  return services.map((s: Record<string, unknown>, i) => {
    const name = str(s?.name, `services[${i}].name`);
    if (!Array.isArray(s.plans) || s.plans.length === 0)
      throw new HerdError("unavailable", `the broker's catalog: service ${name} has no plans`);
    return {
      id: str(s.id, `services[${i}].id`),
      name,
      description: typeof s.description === "string" ? s.description : "",
      bindable: s.bindable === true,
      ...(typeof s.plan_updateable === "boolean" ? { planUpdateable: s.plan_updateable } : {}),
      plans: s.plans.map((p: Record<string, unknown>, j: number) => {
        const plan = str(p?.name, `${name}.plans[${j}].name`);
        const schemas = planSchemas(p.schemas, `${name} plan ${plan}`);
        return {
          id: str(p.id, `${name}.plans[${j}].id`),
          name: plan,
          description: typeof p.description === "string" ? p.description : "",
          ...(typeof p.free === "boolean" ? { free: p.free } : {}),
          ...(typeof p.plan_updateable === "boolean" ? { planUpdateable: p.plan_updateable } : {}),
          ...(schemas ? { schemas } : {}),
        };
      }),
    };
  });
}

/**
 * A plan's `schemas.service_instance.{create,update}.parameters` and
 * `schemas.service_binding.create.parameters` (as `bind`), each compiled
 * once to refuse a broken one now.
 */
function planSchemas(v: unknown, where: string): BrokerPlan["schemas"] {
  type Ops = Record<string, { parameters?: unknown }> | undefined;
  const all = v as { service_instance?: Ops; service_binding?: Ops } | undefined;
  const si = all?.service_instance;
  const sb = all?.service_binding;
  const out: NonNullable<BrokerPlan["schemas"]> = {};
  const found = {
    create: si?.create?.parameters,
    update: si?.update?.parameters,
    bind: sb?.create?.parameters,
  };
  for (const op of ["create", "update", "bind"] as const) {
    const s = found[op];
    if (s === undefined) continue;
    if (typeof s !== "object" || s === null || Array.isArray(s))
      throw new HerdError("unavailable", `the broker's catalog: ${where}'s ${op} schema is not an object`);
    compileSchema(s as Record<string, unknown>, where);
    out[op] = s as Record<string, unknown>;
  }
  return Object.keys(out).length > 0 ? out : undefined;
}
