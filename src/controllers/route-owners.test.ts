import assert from "node:assert/strict";
import { test } from "node:test";
import type { RouteObject } from "../model/live-config.ts";
import type { Service } from "../model/objects.ts";
import { MemoryStore } from "../store/memory-store.ts";
import { checkRouteFree, routeOwners } from "./route-owners.ts";

const route = (host: string) => ({ host, path: "/" }) as Parameters<typeof checkRouteFree>[1];

async function storeWithHello(): Promise<MemoryStore> {
  const store = new MemoryStore();
  await store.put("service", "a/hello/web", {
    tenant: "a",
    app: "hello",
    name: "web",
    spec: { routes: [{ host: "hello.localhost", path: "/" }] },
  } as unknown as Service);
  await store.put("route", "a/hello/beta", {
    tenant: "a",
    app: "hello",
    name: "beta",
    spec: { host: "beta.example.org", path: "/", service: "web" },
  } as unknown as RouteObject);
  return store;
}

test("a route served in the caller's tenant names its owner", async () => {
  const owners = await routeOwners(await storeWithHello(), "a", () => false);
  assert.throws(
    () => checkRouteFree(owners, route("hello.localhost"), "services.web.routes.0", " of web"),
    /^HerdError: route hello\.localhost\/ of web is already served by hello\/web$/,
  );
  assert.throws(() => checkRouteFree(owners, route("beta.example.org"), "host"), /by route hello\/beta$/);
  checkRouteFree(owners, route("free.localhost"), "host");
});

test("another tenant's owner is never named, and the error says what to do instead", async () => {
  const owners = await routeOwners(await storeWithHello(), "b", () => false);
  const local = (() => {
    try {
      checkRouteFree(owners, route("hello.localhost"), "services.web.routes.0", " of web", "hello");
    } catch (err) {
      return err as Error;
    }
  })();
  assert.ok(local, "refused");
  assert.match(local.message, /already served by an app of another tenant: .*herd deploy --app NAME/);
  assert.doesNotMatch(local.message, /\ba\/|hello\/web/, "names neither the tenant nor its app");
  // herd.yaml writes the host out (app shop-hello, host hello.localhost): another app name would not help.
  assert.throws(
    () => checkRouteFree(owners, route("hello.localhost"), "services.web.routes.0", " of web", "shop-hello"),
    (err: Error) =>
      /: give the service a host of its own in herd\.yaml's routes \(- host: NAME\.localhost\)$/.test(
        err.message,
      ) && !/--app/.test(err.message),
  );
  assert.throws(
    () => checkRouteFree(owners, route("beta.example.org"), "host"),
    (err: Error) =>
      /already served by a route of another tenant: give the service another host/.test(err.message) &&
      !/hello|beta\b/.test(err.message.replace("beta.example.org", "")),
  );
});
