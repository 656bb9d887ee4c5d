import assert from "node:assert/strict";
import { test } from "node:test";
import type { Service } from "../model/objects.ts";
import { nextPetId } from "./service-rules.ts";

const svc = (tenant: string) => ({ tenant, app: "shop", name: "db" }) as Service;

test("pet ids: ordinal, the lowest free; another tenant's carry its name, so no two tenants' pets share an id (or a volume)", () => {
  assert.equal(nextPetId(svc("default"), new Set()), "shop-db-0");
  assert.equal(nextPetId(svc("default"), new Set(["shop-db-0", "shop-db-2"])), "shop-db-1");
  assert.equal(nextPetId(svc("acme"), new Set()), "acme.shop-db-0");
  assert.equal(nextPetId(svc("acme"), new Set(["acme.shop-db-0"])), "acme.shop-db-1");
  // Tenant "a" with app "b-shop" and tenant "a-b" with app "shop" do not meet: names hold no dot.
  const ab = { tenant: "a-b", app: "shop", name: "db" } as Service;
  const a = { tenant: "a", app: "b-shop", name: "db" } as Service;
  assert.notEqual(nextPetId(ab, new Set()), nextPetId(a, new Set()));
});
