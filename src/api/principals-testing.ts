/**
 * Test helper: two tenants (`a` and `b`) and one token for every kind of
 * caller, made through the API as a platform team would make them. Used by the
 * permission matrix and the fuzzer, in process or against a child process.
 */

/** The secret of one token per kind of caller. */
export interface TestTokens {
  /** The platform admin (the server's admin token). */
  admin: string;
  /** Users with one role each, in tenant a only. */
  ownerA: string;
  deployerA: string;
  viewerA: string;
  /** A user who is an owner of a and a viewer of b. */
  ownerAViewerB: string;
  /** A service account of tenant a with the deployer role. */
  serviceA: string;
  /** The agent of node n1. */
  agentN1: string;
  gateway: string;
  /** Telemetry ingest for tenant a. */
  ingestA: string;
  join: string;
  /** A user token of viewer-a, revoked. */
  revoked: string;
  /** A user token of viewer-a that expired. */
  expired: string;
}

/** Creates tenants a and b, the users and members of a, and the tokens; returns their secrets. */
export async function createTestTokens(url: string, admin: string): Promise<TestTokens> {
  const call = async (method: string, path: string, body: unknown): Promise<Record<string, string>> => {
    const res = await fetch(`${url}/api/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${admin}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    const text = await res.text();
    if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${text}`);
    return JSON.parse(text) as Record<string, string>;
  };
  const token = async (body: Record<string, string>) => (await call("POST", "/tokens", body)).token;
  for (const name of ["a", "b"]) await call("POST", "/tenants", { name });
  for (const role of ["owner", "deployer", "viewer"]) {
    await call("POST", "/users", { name: `${role}-a` });
    await call("PUT", `/tenants/a/members/${role}-a`, { role });
  }
  await call("POST", "/users", { name: "owner-a-viewer-b" });
  await call("PUT", "/tenants/a/members/owner-a-viewer-b", { role: "owner" });
  await call("PUT", "/tenants/b/members/owner-a-viewer-b", { role: "viewer" });
  await call("POST", "/tenants/a/service-accounts", { name: "service-a", role: "deployer" });
  const revoked = await call("POST", "/tokens", { name: "revoked", user: "viewer-a" });
  await call("DELETE", `/tokens/${revoked.id}`, {});
  const expired = await token({ name: "expired", user: "viewer-a", expiresIn: "1ms" });
  await new Promise((r) => setTimeout(r, 5));
  return {
    admin,
    ownerA: await token({ name: "owner", user: "owner-a" }),
    deployerA: await token({ name: "deployer", user: "deployer-a" }),
    viewerA: await token({ name: "viewer", user: "viewer-a" }),
    ownerAViewerB: await token({ name: "two tenants", user: "owner-a-viewer-b" }),
    serviceA: await token({ name: "ci", user: "service-a" }),
    agentN1: await token({ name: "agent n1", kind: "agent", node: "n1" }),
    gateway: await token({ name: "gateway", kind: "gateway" }),
    ingestA: await token({ name: "ingest a", kind: "ingest", tenant: "a" }),
    join: await token({ name: "join", kind: "join" }),
    revoked: revoked.token,
    expired,
  };
}
