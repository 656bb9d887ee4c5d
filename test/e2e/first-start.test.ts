// The first start as a user sees it: `herd up` without --no-example deploys
// examples/hello by itself, prints how to reach it over HTTP and HTTPS, and
// both commands work (HTTPS verified with herd's CA only). A second start on
// the same data dir does not deploy it again.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, test } from "node:test";
import { cleanupHerd, type Herd, httpsGet, startHerd, waitFor } from "./harness.ts";

let herd: Herd | undefined;
after(() => cleanupHerd(herd));

test("the first herd up deploys examples/hello, reachable over HTTP and HTTPS as printed; the next start does not redeploy", async () => {
  herd = await startHerd({ example: true });
  const printed = await waitFor(
    "herd up to say hello is serving",
    () =>
      /examples\/hello is serving: curl -H 'Host: hello\.localhost' (\S+)\/\n {2}over HTTPS: curl --cacert (\S+) https:\/\/hello\.localhost:(\d+)\/\n/.exec(
        herd!.output(),
      ) ?? undefined,
    120_000,
  );
  const [, gatewayUrl, caFile, httpsPort] = printed;
  assert.equal(gatewayUrl, herd.gatewayUrl);

  // What the first line says: plain HTTP with the Host header.
  const plain = await herd.request("hello.localhost");
  assert.equal(plain.status, 200);
  assert.match(plain.body, /^hi from hello-web-\S+ \(release 1\)\n$/);
  // What the second says: HTTPS on that port, the certificate for hello.localhost, trusted through that CA file.
  const ca = readFileSync(caFile, "utf8");
  const secure = await httpsGet(Number(httpsPort), "hello.localhost", ca);
  assert.equal(secure.status, 200);
  assert.match(secure.body, /^hi from hello-web-\S+ \(release 1\)\n$/);
  assert.equal(secure.subjectAltName, "DNS:hello.localhost");

  // As herd.yaml says: two instances, one deploy.
  const instances = await herd.api<{ items: { state: string }[] }>("GET", "/apps/hello/instances");
  assert.equal(instances.body.items.filter((i) => i.state === "running").length, 2);
  const app = await herd.api<{ app: { release: number; latestVersion: number } }>("GET", "/apps/hello");
  assert.deepEqual([app.body.app.release, app.body.app.latestVersion], [1, 1]);

  // The second start: hello comes back, and is not deployed again.
  const dataDir = herd.dataDir;
  await herd.stop();
  herd = await startHerd({ dataDir, example: true });
  await waitFor(
    "hello to serve after the restart",
    async () => (await herd!.request("hello.localhost")).status === 200,
    60_000,
  );
  const again = await herd.api<{ app: { release: number; latestVersion: number } }>("GET", "/apps/hello");
  assert.deepEqual([again.body.app.release, again.body.app.latestVersion], [1, 1], "no second deploy");
  assert.doesNotMatch(herd.output(), /examples\/hello is serving/);
});
