/**
 * herd.yaml's route rules beyond the schema: no two routes the same, splits,
 * mirrors and placement rules name services of the same file, aggregations
 * forward no header the gateway owns (called by validateManifest).
 */

import { HerdError } from "../common/errors.ts";
import { routeIdentity } from "./gateway-view.ts";
import type { Manifest } from "./manifest.ts";
import { UNFORWARDABLE } from "./manifest-route.ts";
import { placementServices } from "./placement.ts";

type LineOf = (path: string[]) => number | undefined;

/** Two services (or one twice) declaring the same route is an error: the gateway could serve only one. */
export function checkRouteClashes(m: Manifest, file: string, lineOf?: LineOf): void {
  const seen = new Map<string, string>();
  for (const [name, service] of Object.entries(m.services)) {
    (service.routes ?? []).forEach((r, n) => {
      const id = routeIdentity({ ...r, path: r.path ?? "/" });
      const field = `services.${name}.routes.${n}`;
      const first = seen.get(id);
      if (first === undefined) {
        seen.set(id, field);
        return;
      }
      const line = lineOf?.(["services", name, "routes", String(n)]);
      throw new HerdError(
        "conflict",
        `${line ? `${file}:${line}` : file}: ${field}: the same route as ${first}`,
        [{ field, message: `the same route as ${first}`, line }],
      );
    });
  }
}

/** A split names services of the same herd.yaml, and its shares add up to at most 100 %. */
export function checkSplits(m: Manifest, file: string, lineOf?: LineOf): void {
  for (const [name, service] of Object.entries(m.services)) {
    placementServices(service.placement).forEach((target) => {
      if (target in m.services) return;
      const kind = service.placement?.affinity?.some((t) => t.service === target)
        ? "affinity"
        : "antiAffinity";
      const list = service.placement?.[kind] ?? [];
      const i = list.findIndex((t) => t.service === target);
      const path = ["services", name, "placement", kind, String(i), "service"];
      const field = path.join(".");
      const line = lineOf?.(path);
      const message = `no service ${target} in this herd.yaml`;
      throw new HerdError("invalid", `${line ? `${file}:${line}` : file}: ${field}: ${message}`, [
        { field, message, line },
      ]);
    });
    (service.routes ?? []).forEach((r, n) => {
      if (r.mirror && (!(r.mirror.service in m.services) || r.mirror.service === name)) {
        const field = `services.${name}.routes.${n}.mirror.service`;
        const line = lineOf?.(["services", name, "routes", String(n), "mirror", "service"]);
        const message =
          r.mirror.service === name
            ? "is this route's own service"
            : `no service ${r.mirror.service} in this herd.yaml`;
        throw new HerdError("invalid", `${line ? `${file}:${line}` : file}: ${field}: ${message}`, [
          { field, message, line },
        ]);
      }
      if (!r.split) return;
      const where = (path: string[]) => {
        const line = lineOf?.(["services", name, "routes", String(n), "split", ...path]);
        return { field: ["services", name, "routes", n, "split", ...path].join("."), line };
      };
      r.split.to.forEach((t, i) => {
        if (!(t.service in m.services) || t.service === name) {
          const at = where(["to", String(i), "service"]);
          const message =
            t.service === name ? "is this route's own service" : `no service ${t.service} in this herd.yaml`;
          throw new HerdError(
            "invalid",
            `${at.line ? `${file}:${at.line}` : file}: ${at.field}: ${message}`,
            [{ ...at, message }],
          );
        }
      });
      const total = r.split.to.reduce((sum, t) => sum + t.weight, 0);
      if (total > 100) {
        const at = where(["to"]);
        const message = `the weights add up to ${total}, more than 100`;
        throw new HerdError("invalid", `${at.line ? `${file}:${at.line}` : file}: ${at.field}: ${message}`, [
          { ...at, message },
        ]);
      }
    });
  }
}

/**
 * An aggregation's parts name services of the same herd.yaml, it forwards no
 * header the gateway owns, and it does not mix with what needs one upstream
 * service (split, mirror, rewrite) or with methods other than GET and HEAD.
 */
export function checkAggregates(m: Manifest, file: string, lineOf?: LineOf): void {
  for (const [name, service] of Object.entries(m.services)) {
    (service.routes ?? []).forEach((r, n) => {
      const a = r.aggregate;
      if (!a) return;
      const fail = (path: string[], message: string): never => {
        const parts = ["services", name, "routes", String(n), ...path];
        const field = parts.join(".");
        const line = lineOf?.(parts);
        throw new HerdError("invalid", `${line ? `${file}:${line}` : file}: ${field}: ${message}`, [
          { field, message, line },
        ]);
      };
      for (const other of ["split", "mirror", "rewrite"] as const) {
        if (r[other] !== undefined) {
          fail(
            ["aggregate"],
            `cannot be combined with ${other} (an aggregation calls its parts, not one service)`,
          );
        }
      }
      const methods = r.methods?.filter((x) => x !== "GET" && x !== "HEAD") ?? [];
      if (methods.length > 0)
        fail(["methods"], `an aggregation answers only GET and HEAD, not ${methods[0]}`);
      (a.headers ?? []).forEach((h, i) => {
        if (UNFORWARDABLE.has(h.toLowerCase())) {
          fail(["aggregate", "headers", String(i)], `${h} is set by the gateway and cannot be forwarded`);
        }
      });
      for (const [part, p] of Object.entries(a.parts)) {
        if (!(p.service in m.services)) {
          fail(["aggregate", "parts", part, "service"], `no service ${p.service} in this herd.yaml`);
        }
      }
    });
  }
}
