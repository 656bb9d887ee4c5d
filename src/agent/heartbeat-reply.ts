/** The heartbeat reply as it comes off the wire, checked before the agent acts on it. */

import { HerdError } from "../common/errors.ts";
import { type HeartbeatReply, type Peers, SAFE_INSTANCE_ID as SAFE_ID } from "../model/protocol.ts";
import { IMAGE_REF } from "../model/service-spec.ts";

function fail(field: string, message: string): never {
  throw new HerdError("invalid", `heartbeat reply: ${field}: ${message}`, [{ field, message }]);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Checks a heartbeat reply from the wire; throws HerdError("invalid") naming the first bad field. */
export function parseHeartbeatReply(value: unknown): HeartbeatReply {
  if (!isObject(value)) return fail("(root)", "not an object");
  if (!Array.isArray(value.instances)) return fail("instances", "not an array");
  if (typeof value.intervalMs !== "number") return fail("intervalMs", "not a number");
  if (
    value.minIntervalMs !== undefined &&
    (typeof value.minIntervalMs !== "number" || !(value.minIntervalMs >= 0 && value.minIntervalMs <= 600_000))
  )
    fail("minIntervalMs", "not a number of ms from 0 to 600000");
  if (
    value.ingestTokens !== undefined &&
    (!isObject(value.ingestTokens) || Object.values(value.ingestTokens).some((t) => typeof t !== "string"))
  )
    fail("ingestTokens", "not an object of strings {tenant: token}");
  if (
    value.services !== undefined &&
    (!isObject(value.services) ||
      Object.values(value.services).some((l) => !Array.isArray(l) || l.some((n) => typeof n !== "string")))
  )
    fail("services", "not an object of string lists {tenant: [app/service]}");
  if (
    value.discardVolumes !== undefined &&
    (!Array.isArray(value.discardVolumes) ||
      value.discardVolumes.some((id) => typeof id !== "string" || !SAFE_ID.test(id)))
  )
    fail("discardVolumes", "not a list of safe instance ids");
  if (value.peers !== undefined) parsePeers(value.peers);
  for (const [i, d] of (value.instances as unknown[]).entries()) {
    const at = `instances.${i}`;
    if (!isObject(d)) return fail(at, "not an object");
    if (typeof d.id !== "string" || !SAFE_ID.test(d.id)) fail(`${at}.id`, "not a safe instance id");
    for (const key of ["app", "service", "tenant"])
      if (typeof d[key] !== "string") fail(`${at}.${key}`, "not a string");
    if (!Number.isInteger(d.release)) fail(`${at}.release`, "not an integer");
    if (!Number.isInteger(d.generation)) fail(`${at}.generation`, "not an integer");
    if (d.mode !== "cattle" && d.mode !== "pet") fail(`${at}.mode`, "not cattle or pet");
    if (d.action !== "run" && d.action !== "stop") fail(`${at}.action`, "not run or stop");
    const run = d.run;
    if (!isObject(run)) return fail(`${at}.run`, "not an object");
    if (typeof run.slug !== "string") fail(`${at}.run.slug`, "not a string");
    if (typeof run.command !== "string") fail(`${at}.run.command`, "not a string");
    if (run.image !== undefined && (typeof run.image !== "string" || !IMAGE_REF.test(run.image)))
      fail(`${at}.run.image`, "not an image reference");
    if (run.runtime !== undefined && run.runtime !== "docker") fail(`${at}.run.runtime`, "not docker");
    if (run.imageUser !== undefined && run.imageUser !== true) fail(`${at}.run.imageUser`, "not true");
    if (!isObject(run.env) || !Object.values(run.env).every((v) => typeof v === "string")) {
      fail(`${at}.run.env`, "not a map of strings");
    }
    if (
      d.secretEnv !== undefined &&
      !(isObject(d.secretEnv) && Object.values(d.secretEnv).every((v) => typeof v === "string"))
    )
      fail(`${at}.secretEnv`, "not a map of strings");
    if (d.secretError !== undefined && typeof d.secretError !== "string")
      fail(`${at}.secretError`, "not a string");
    if (d.config !== undefined) {
      const c = d.config;
      if (!isObject(c)) return fail(`${at}.config`, "not an object");
      if (!Number.isInteger(c.version)) fail(`${at}.config.version`, "not an integer");
      if (c.onChange !== "file" && c.onChange !== "signal" && c.onChange !== "restart")
        fail(`${at}.config.onChange`, "not file, signal or restart");
      const doc = c.document;
      if (doc !== undefined && !(isObject(doc) && isObject(doc.values) && isObject(doc.files)))
        fail(`${at}.config.document`, "not a config document");
      if (isObject(doc) && isObject(doc.files) && Object.keys(doc.files).some((n) => !SAFE_ID.test(n)))
        fail(`${at}.config.document.files`, "a file name is not safe");
    }
    const resources = run.resources;
    if (!isObject(resources) || typeof resources.cpu !== "number" || typeof resources.memory !== "number") {
      fail(`${at}.run.resources`, "needs numbers cpu and memory");
    }
    const health = run.health;
    if (!isObject(health)) return fail(`${at}.run.health`, "not an object");
    for (const key of ["intervalMs", "timeoutMs", "failures", "startupMs"]) {
      if (typeof health[key] !== "number" || (health[key] as number) <= 0)
        fail(`${at}.run.health.${key}`, "not a positive number");
    }
    if (health.path !== undefined && typeof health.path !== "string")
      fail(`${at}.run.health.path`, "not a string");
  }
  return value as unknown as HeartbeatReply;
}

/** A port range as the wire carries it. */
function isRange(v: unknown): boolean {
  const r = v as { min?: unknown; max?: unknown } | null;
  return (
    typeof r === "object" &&
    r !== null &&
    Number.isInteger(r.min) &&
    Number.isInteger(r.max) &&
    (r.min as number) >= 1 &&
    (r.min as number) <= (r.max as number) &&
    (r.max as number) <= 65535
  );
}

/** Checks `peers` (controllers/peers.ts) from the wire or peers.json; throws HerdError("invalid") naming the first bad field. */
export function parsePeers(peers: unknown): Peers {
  if (!isObject(peers)) return fail("peers", "not an object");
  if (typeof peers.version !== "string") fail("peers.version", "not a string");
  if (typeof peers.closed !== "boolean") fail("peers.closed", "not a boolean");
  if (!Array.isArray(peers.nodes)) return fail("peers.nodes", "not an array");
  for (const [i, n] of peers.nodes.entries()) {
    if (!isObject(n) || typeof n.address !== "string")
      return fail(`peers.nodes.${i}.address`, "not a string");
    if (!isRange(n.ports)) fail(`peers.nodes.${i}.ports`, "not a port range {min, max}");
    const m = n.metricsPort;
    if (m !== undefined && !(Number.isInteger(m) && (m as number) >= 1 && (m as number) <= 65535))
      fail(`peers.nodes.${i}.metricsPort`, "not a port");
  }
  if (
    peers.platform !== undefined &&
    (!Array.isArray(peers.platform) || peers.platform.some((e) => typeof e !== "string"))
  )
    fail("peers.platform", "not a list of host:port");
  if (!isObject(peers.tenants)) return fail("peers.tenants", "not an object");
  for (const [tenant, list] of Object.entries(peers.tenants)) {
    if (!Array.isArray(list) || list.some((e) => typeof e !== "string"))
      fail(`peers.tenants.${tenant}`, "not a list of address:port");
  }
  return { ...(peers as unknown as Peers), platform: (peers.platform as string[] | undefined) ?? [] };
}
