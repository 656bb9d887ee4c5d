// Pure logic of token checks: decoding, claims, and finding a credential in a request.

import assert from "node:assert/strict";
import { test } from "node:test";
import { queryParam, rawHeader } from "./auth.ts";
import { claimsProblem, decodeJwt } from "./jwt.ts";

const part = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");

test("decodeJwt: three base64url JSON parts, else a reason", () => {
  const jwt = decodeJwt(`${part({ alg: "HS256" })}.${part({ sub: "a" })}.c2ln`);
  assert.ok(typeof jwt !== "string");
  assert.equal(jwt.payload.sub, "a");
  assert.equal(jwt.signature.toString(), "sig");
  for (const bad of [
    "",
    "a.b",
    "a.b.c.d",
    `.${part({})}.x`,
    `${part([1])}.${part({})}.x`,
    "e30.bm90IGpzb24.x",
  ]) {
    assert.equal(typeof decodeJwt(bad), "string", bad);
  }
});

test("claimsProblem: exp (expired told apart), nbf, aud as a string or a list", () => {
  const now = 1_000_000_000_000;
  const s = now / 1000;
  assert.equal(claimsProblem({ exp: s + 1 }, now, undefined), null);
  assert.deepEqual(claimsProblem({ exp: s }, now, undefined)?.expired, true);
  assert.equal(claimsProblem({ exp: "soon" }, now, undefined)?.expired, false);
  assert.match(claimsProblem({ nbf: s + 10 }, now, undefined)?.message ?? "", /not valid before/);
  assert.equal(claimsProblem({ aud: "shop" }, now, "shop"), null);
  assert.equal(claimsProblem({ aud: ["x", "shop"] }, now, "shop"), null);
  assert.match(claimsProblem({ aud: ["x"] }, now, "shop")?.message ?? "", /audience shop/);
  assert.match(claimsProblem({}, now, "shop")?.message ?? "", /audience shop/);
});

test("rawHeader and queryParam find a credential without building req.headers", () => {
  const raw = ["Host", "a", "X-API-KEY", "k1", "x-api-key", "k2"];
  assert.equal(rawHeader(raw, "x-api-key"), "k1");
  assert.equal(rawHeader(raw, "authorization"), undefined);
  assert.equal(queryParam("/p?a=1&apikey=k%2B1&b", "apikey"), "k+1");
  assert.equal(queryParam("/p?apikeyx=1", "apikey"), undefined);
  assert.equal(queryParam("/p", "apikey"), undefined);
  assert.equal(queryParam("/p?apikey=%E0", "apikey"), "%E0", "undecodable: as sent");
});
