import assert from "node:assert/strict";
import { test } from "node:test";
import { matchRoute, type PageRoute } from "./route-match.ts";

const page = () => null;
const ROUTES: PageRoute[] = [
  { path: "/", title: () => "Overview", page },
  { path: "/apps/:app", title: (p) => p.app, page },
  { path: "/apps/:app/instances/:id", title: (p) => p.id, page },
  { path: "/apps/:app/:tab", title: (p) => p.tab, page },
];

test("a path finds its page and parameters; the first match wins; others find nothing", () => {
  assert.equal(matchRoute(ROUTES, "/")?.route.path, "/");
  assert.deepEqual(matchRoute(ROUTES, "/apps/hello")?.params, { app: "hello" });
  assert.deepEqual(matchRoute(ROUTES, "/apps/hello/")?.params, { app: "hello" });
  const instance = matchRoute(ROUTES, "/apps/hello/instances/hello-web-1");
  assert.equal(instance?.route.path, "/apps/:app/instances/:id");
  assert.deepEqual(instance?.params, { app: "hello", id: "hello-web-1" });
  assert.deepEqual(matchRoute(ROUTES, "/apps/hello/logs")?.params, { app: "hello", tab: "logs" });
  assert.deepEqual(matchRoute(ROUTES, "/apps/a%20b")?.params, { app: "a b" });
  assert.equal(matchRoute(ROUTES, "/nodes"), undefined);
  assert.equal(matchRoute(ROUTES, "/apps/hello/instances/x/y"), undefined);
});
