import assert from "node:assert/strict";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Rounds } from "./rounds.ts";

test("a round asked for while one runs joins it; the next starts after it", async () => {
  let started = 0;
  let release = () => {};
  const rounds = new Rounds(
    () => {
      started++;
      return new Promise<void>((r) => (release = r));
    },
    () => assert.fail("no error"),
  );
  const first = rounds.run();
  assert.equal(rounds.run(), first);
  assert.equal(started, 1);
  release();
  await first;
  const second = rounds.run();
  assert.notEqual(second, first);
  assert.equal(started, 2);
  release();
  await second;
});

test("a failed round goes to onError, resolves, and does not stop the next", async () => {
  const errors: unknown[] = [];
  let fail = true;
  const rounds = new Rounds(
    async () => {
      if (fail) throw new Error("boom");
    },
    (err) => errors.push(err),
  );
  await rounds.run();
  assert.match(String(errors[0]), /boom/);
  fail = false;
  await rounds.run();
  assert.equal(errors.length, 1);
});

test("runs every interval until stopped; stop waits for the round in flight", async () => {
  let count = 0;
  let inFlight = false;
  const rounds = new Rounds(
    async () => {
      count++;
      inFlight = true;
      await sleep(30);
      inFlight = false;
    },
    (err) => assert.fail(String(err)),
  );
  rounds.start(5);
  while (count < 2) await sleep(5);
  while (!inFlight) await sleep(1);
  await rounds.stop();
  assert.equal(inFlight, false, "stop resolved before the round ended");
  const after = count;
  await sleep(50);
  assert.equal(count, after, "a round ran after stop");
});
