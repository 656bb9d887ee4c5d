import assert from "node:assert/strict";
import { test } from "node:test";
import { dependencyWaves, dependsOnProblems, findCycle, formatCycle, qualify } from "./dependencies.ts";
import { parseManifest } from "./manifest.ts";

test("findCycle finds the cycle that closes, across apps, and nothing in a DAG", () => {
  const dag = new Map([
    ["a/web", ["a/db", "b/api"]],
    ["b/api", ["a/db"]],
    ["a/db", []],
  ]);
  assert.equal(findCycle(dag), undefined);
  const cyclic = new Map([
    ["a/web", ["b/api"]],
    ["b/api", ["a/web"]],
  ]);
  assert.equal(formatCycle(findCycle(cyclic) ?? []), "a/web → b/api → a/web");
});

test("dependencyWaves orders dependencies first and ignores nodes outside the graph", () => {
  const g = new Map([
    ["web", ["api", "cdn/x"]],
    ["api", ["db"]],
    ["db", []],
    ["worker", ["db"]],
  ]);
  assert.deepEqual(dependencyWaves(g), [["db"], ["api", "worker"], ["web"]]);
  assert.throws(
    () =>
      dependencyWaves(
        new Map([
          ["a", ["b"]],
          ["b", ["a"]],
        ]),
      ),
    /cycle/,
  );
});

test("qualify: a bare name is the same app's service", () => {
  assert.deepEqual(qualify("shop", ["db", "pay/api"]), ["shop/db", "pay/api"]);
});

test("dependsOnProblems names unknown services, self-dependency and the cycle", () => {
  assert.deepEqual(dependsOnProblems({ web: { dependsOn: ["db", "pay/api"] }, db: {} }), []);
  const unknown = dependsOnProblems({ web: { dependsOn: ["dbx"] }, db: {} });
  assert.equal(unknown[0]?.field, "services.web.dependsOn.0");
  assert.match(unknown[0]?.message ?? "", /no service dbx in this herd.yaml \(services: web, db\)/);
  assert.match(dependsOnProblems({ web: { dependsOn: ["web"] } })[0]?.message ?? "", /itself/);
  const cycle = dependsOnProblems({
    a: { dependsOn: ["b"] },
    b: { dependsOn: ["c"] },
    c: { dependsOn: ["a"] },
  });
  assert.equal(cycle[0]?.message, "dependency cycle: a → b → c → a");
});

test("herd.yaml: dependsOn parses, and a cycle is refused with its line", () => {
  const ok = parseManifest("services:\n  web:\n    dependsOn: [db]\n  db: {}\n");
  assert.deepEqual(ok.services.web?.dependsOn, ["db"]);
  assert.throws(
    () => parseManifest("services:\n  web:\n    dependsOn: [db]\n  db:\n    dependsOn: [web]\n"),
    /herd\.yaml:5: services\.db\.dependsOn: dependency cycle: db → web → db$/,
  );
  assert.throws(() => parseManifest("services:\n  web:\n    dependsOn: [Bad/x]\n"), /dependsOn/);
});
