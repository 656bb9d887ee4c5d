/**
 * A small but real Open Service Broker for tests: node:http on loopback,
 * basic auth, the API version header checked, asynchronous provisions,
 * updates and deprovisions followed through last_operation. Its catalog:
 *
 *   mail  (bindable; no plan_updateable)   free: synchronous · pro: 202 · broken: 202 then failed
 *   queue (with `{ queue: true }`; plan_updateable)  small: schema'd parameters, PATCH answered at once
 *         big: PATCH answered 202 · fixed: plan_updateable false · doomed: an update to it fails
 *
 * What herd asked is kept in `seen`, instances (plan, parameters) in `instances`,
 * bindings with the credentials they were given in `bindings`.
 */

import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export const USER = "herd";
export const PASSWORD = "broker-secret-1";

export interface Seen {
  method: string;
  path: string;
  query: URLSearchParams;
  body: Record<string, unknown>;
}

interface Instance {
  plan: string;
  polls: number;
  deleting?: boolean;
  operation?: string;
  parameters?: Record<string, unknown>;
  /** An asynchronous update: the plan it moves to. */
  updating?: string;
}

const QUEUE_SCHEMA = {
  $schema: "http://json-schema.org/draft-04/schema#",
  type: "object",
  properties: {
    region: { type: "string", enum: ["eu", "us"] },
    size: { type: "integer", minimum: 1, maximum: 10 },
  },
  required: ["region"],
  additionalProperties: false,
};
/** What a binding of a queue takes (`schemas.service_binding.create.parameters`). */
const QUEUE_BIND_SCHEMA = {
  type: "object",
  properties: { role: { type: "string", enum: ["reader", "writer"] } },
  additionalProperties: false,
};
const QUEUE_UPDATE_SCHEMA = {
  type: "object",
  properties: { size: { type: "integer", minimum: 1, maximum: 10 } },
  additionalProperties: false,
};

export class TestBroker {
  seen: Seen[] = [];
  instances = new Map<string, Instance>();
  /** `<instance>/<binding>` → the credentials given. */
  bindings = new Map<string, Record<string, unknown>>();
  /** A broker that fails every request (500). */
  down = false;
  readonly server: Server;
  readonly #queue: boolean;

  constructor(o: { queue?: boolean } = {}) {
    this.#queue = o.queue === true;
    this.server = createServer((req, res) => {
      this.#handle(req)
        .then(([status, body]) => {
          res.writeHead(status, { "content-type": "application/json" });
          res.end(JSON.stringify(body));
        })
        .catch((err) => {
          res.writeHead(500);
          res.end(JSON.stringify({ description: String(err) }));
        });
    });
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  listen(): Promise<void> {
    return new Promise((r) => this.server.listen(0, "127.0.0.1", r));
  }

  close(): Promise<void> {
    return new Promise((r) => this.server.close(() => r()));
  }

  /** The requests of one method to paths ending with `suffix`. */
  asked(method: string, suffix: string): Seen[] {
    return this.seen.filter((s) => s.method === method && s.path.endsWith(suffix));
  }

  #catalog() {
    const services: unknown[] = [
      {
        id: "svc-mail",
        name: "mail",
        description: "Outgoing mail",
        bindable: true,
        plans: [
          { id: "plan-free", name: "free", description: "100 mails a day", free: true },
          { id: "plan-pro", name: "pro", description: "no limit" },
          { id: "plan-broken", name: "broken", description: "never works" },
        ],
      },
    ];
    const schemas = {
      service_instance: {
        create: { parameters: QUEUE_SCHEMA },
        update: { parameters: QUEUE_UPDATE_SCHEMA },
      },
      service_binding: { create: { parameters: QUEUE_BIND_SCHEMA } },
    };
    if (this.#queue)
      services.push({
        id: "svc-queue",
        name: "queue",
        description: "Message queues",
        bindable: true,
        plan_updateable: true,
        plans: [
          { id: "plan-small", name: "small", description: "one node", schemas },
          { id: "plan-big", name: "big", description: "three nodes", schemas },
          { id: "plan-fixed", name: "fixed", description: "cannot change", plan_updateable: false },
          { id: "plan-doomed", name: "doomed", description: "an update to it fails" },
        ],
      });
    return { services };
  }

  async #handle(req: IncomingMessage): Promise<[number, unknown]> {
    const u = new URL(req.url ?? "/", "http://x");
    let text = "";
    for await (const c of req) text += c;
    const body = text ? JSON.parse(text) : {};
    this.seen.push({ method: req.method ?? "", path: u.pathname, query: u.searchParams, body });
    if (this.down) return [500, { description: "the broker is down" }];
    const auth = `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString("base64")}`;
    if (req.headers.authorization !== auth) return [401, { description: "who are you" }];
    if (req.headers["x-broker-api-version"] !== "2.17") return [412, { description: "version" }];
    const parts = u.pathname.split("/").filter(Boolean);
    if (req.method === "GET" && u.pathname === "/v2/catalog") return [200, this.#catalog()];
    if (parts[0] !== "v2" || parts[1] !== "service_instances") return [404, {}];
    const id = parts[2];
    const inst = this.instances.get(id);
    if (parts.length === 3 && req.method === "PUT") {
      if (u.searchParams.get("accepts_incomplete") !== "true") return [422, { error: "AsyncRequired" }];
      const plan = body.plan_id as string;
      if (inst) return [200, {}];
      const parameters = body.parameters as Record<string, unknown> | undefined;
      if (plan === "plan-free" || plan === "plan-small" || plan === "plan-fixed") {
        this.instances.set(id, { plan, polls: 0, ...(parameters ? { parameters } : {}) });
        return [201, { dashboard_url: `${this.url}/dash/${id}` }];
      }
      this.instances.set(id, {
        plan,
        polls: 0,
        operation: `prov-${id}`,
        ...(parameters ? { parameters } : {}),
      });
      return [202, { operation: `prov-${id}` }];
    }
    if (parts.length === 3 && req.method === "PATCH") {
      if (!inst) return [404, {}];
      if (u.searchParams.get("accepts_incomplete") !== "true") return [422, { error: "AsyncRequired" }];
      const prev = (body.previous_values as { plan_id?: string } | undefined)?.plan_id;
      const plan = body.plan_id as string;
      if (prev !== inst.plan && plan !== inst.plan)
        return [400, { description: `previous plan ${prev} is not the instance's (${inst.plan})` }];
      if (plan === "plan-free" || plan === "plan-pro")
        return [400, { description: "mail plans do not change" }];
      const parameters = body.parameters as Record<string, unknown> | undefined;
      if (parameters) inst.parameters = { ...inst.parameters, ...parameters };
      if (plan === "plan-small" || plan === inst.plan) {
        inst.plan = plan;
        return [200, {}];
      }
      inst.updating = plan;
      inst.polls = 0;
      inst.operation = `upd-${id}-${plan}`;
      return [202, { operation: inst.operation }];
    }
    if (parts.length === 3 && req.method === "DELETE") {
      if (!inst) return [410, {}];
      inst.deleting = true;
      inst.polls = 0;
      inst.operation = `deprov-${id}`;
      return [202, { operation: inst.operation }];
    }
    if (parts[3] === "last_operation" && req.method === "GET") {
      if (!inst) return [410, {}];
      assert.equal(u.searchParams.get("operation"), inst.operation, "herd names the operation it polls");
      inst.polls++;
      if (inst.polls < 2) return [200, { state: "in progress", description: "working" }];
      if (inst.deleting) {
        this.instances.delete(id);
        return [200, { state: "succeeded" }];
      }
      if (inst.updating) {
        const to = inst.updating;
        inst.updating = undefined;
        if (to === "plan-doomed") return [200, { state: "failed", description: "no room for doomed" }];
        inst.plan = to;
        return [200, { state: "succeeded", description: "moved" }];
      }
      if (inst.plan === "plan-broken") return [200, { state: "failed", description: "out of mailboxes" }];
      return [200, { state: "succeeded", description: "ready" }];
    }
    if (parts[3] === "service_bindings" && parts.length === 5) {
      if (!inst) return [404, {}];
      const key = `${id}/${parts[4]}`;
      if (req.method === "PUT") {
        // The same binding asked again (herd finishing after a crash): 200 with its credentials.
        const had = this.bindings.get(key);
        if (had) return [200, { credentials: had }];
        const user = `u-${parts[4].slice(0, 8)}`;
        const credentials = {
          uri: `smtp://${user}:pw@mail.example:25`,
          username: user,
          password: "pw",
          port: 25,
          tls: { required: true },
        };
        this.bindings.set(key, credentials);
        return [201, { credentials }];
      }
      if (req.method === "DELETE") return this.bindings.delete(key) ? [200, {}] : [410, {}];
    }
    return [404, {}];
  }
}
