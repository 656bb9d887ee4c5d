import assert from "node:assert/strict";
import { test } from "node:test";
import { servingUrls } from "./deploy-controller.ts";

test("a deploy's URLs: each once, a wildcard host as written", () => {
  const routes = [
    { host: "shop.localhost", path: "/api/v1" },
    { host: "shop.localhost", path: "/api/v1" }, // the same path for POST with a header
    { host: "shop.localhost", path: "/healthz" },
    { host: "*.shop.localhost", path: "/" },
  ];
  assert.deepEqual(servingUrls("http://127.0.0.1:8080", routes), [
    "http://shop.localhost:8080/api/v1",
    "http://shop.localhost:8080/healthz",
    "http://*.shop.localhost:8080/",
  ]);
  assert.deepEqual(servingUrls("https://gw.example.com", [{ host: "a.example.com", path: "/" }]), [
    "https://a.example.com/",
  ]);
});
