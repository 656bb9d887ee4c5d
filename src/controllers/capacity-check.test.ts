// Where a pet made again goes (dataOn), as placement and the "cannot be placed" check both read it.

import assert from "node:assert/strict";
import { test } from "node:test";
import type { Instance, Node, Service } from "../model/objects.ts";
import { dataOn, placementRequest } from "./capacity-check.ts";

const node = (name: string, volumes?: string[]) => ({ name, ...(volumes ? { volumes } : {}) }) as Node;

test("a pet goes to the node that reports its volume, after its own node and where an operator moves it", () => {
  const nodes = [node("n1"), node("n2", ["hello-web-0", "hello-db-3"])];
  const pet = { id: "hello-db-3", mode: "pet" as const, node: null };
  assert.deepEqual(dataOn(nodes, pet), { dataOn: "n2" });
  assert.deepEqual(dataOn(nodes, { ...pet, id: "hello-db-4" }), {}, "a new pet: no data anywhere");
  assert.deepEqual(dataOn(nodes, { ...pet, mode: "cattle" }), {});
  const svc = { tenant: "default", app: "hello", name: "db", spec: { resources: {} } } as Service;
  const bound = (i: Partial<Instance>) =>
    placementRequest(svc, { ...pet, resources: { cpu: 0.1, memory: 1 }, ...i, ...dataOn(nodes, pet) }).node;
  assert.equal(bound({}), "n2");
  assert.equal(bound({ node: "n1" }), "n1", "placed: it stays where it is");
  assert.equal(bound({ moving: { to: "n1" } }), "n1", "moved by an operator");
});
