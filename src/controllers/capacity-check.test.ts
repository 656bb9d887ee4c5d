// Where a pet made again goes (dataOn), as placement and the "cannot be placed" check both read it.

import assert from "node:assert/strict";
import { test } from "node:test";
import type { Node } from "../model/objects.ts";
import { dataOn } from "./capacity-check.ts";

const node = (name: string, volumes?: string[]) => ({ name, ...(volumes ? { volumes } : {}) }) as Node;

test("a pet without a node goes to the node that reports its volume; cattle, placed pets and moved pets do not", () => {
  const nodes = [node("n1"), node("n2", ["hello-web-0", "hello-db-3"])];
  const pet = { id: "hello-db-3", mode: "pet" as const, node: null };
  assert.deepEqual(dataOn(nodes, pet), { dataOn: "n2" });
  assert.deepEqual(dataOn(nodes, { ...pet, id: "hello-db-4" }), {}, "a new pet: no data anywhere");
  assert.deepEqual(dataOn(nodes, { ...pet, node: "n1" }), {}, "placed: it stays where it is");
  assert.deepEqual(dataOn(nodes, { ...pet, moving: { to: "n1" } }), {}, "moved by an operator");
  assert.deepEqual(dataOn(nodes, { ...pet, mode: "cattle" }), {});
});
