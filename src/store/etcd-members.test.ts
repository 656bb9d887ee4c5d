// The per-member breaker's logic with probes the test answers: which member
// is refused, when it comes back, and what happens to its work in flight.
// etcd-store.test.ts has it against a real member cut off the network.

import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { test } from "node:test";
import { isRecoverableError } from "etcd3";
import { MemberBreaker } from "./etcd-members.ts";
import { type SentWrite, sentOnce } from "./sent-once.ts";

const MEMBERS = ["http://a:1", "http://b:1", "http://c:1"];

/** How each member's probe answers: "up", "down" (rejects) or "silent" (never answers). */
type Health = Record<string, "up" | "down" | "silent">;

/** Every member up; a test changes its copy as it goes. */
const allUp = (): Health => Object.fromEntries(MEMBERS.map((m) => [m, "up"]));

/** A breaker whose probes answer as `health` says. */
function breakerWith(health: Health, changes: string[] = []) {
  return new MemberBreaker({
    members: MEMBERS,
    probeTimeoutMs: 50,
    probe: (member) =>
      health[member] === "up"
        ? Promise.resolve()
        : health[member] === "down"
          ? Promise.reject(new Error("refused"))
          : new Promise<void>(() => {}),
    onChange: (member, up, why) => changes.push(`${member} ${up ? "up" : "down"}: ${why}`),
  });
}

test("a member that does not answer its probe is refused, and taken back once it answers", async () => {
  const health: Health = {
    "http://a:1": "up",
    "http://b:1": "silent",
    "http://c:1": "up",
  };
  const changes: string[] = [];
  const breaker = breakerWith(health, changes);
  assert.equal(breaker.refuses("http://b:1"), false, "every member starts up");
  await breaker.probeAll();
  assert.equal(breaker.refuses("http://b:1"), true);
  assert.deepEqual(breaker.up, ["http://a:1", "http://c:1"]);
  assert.deepEqual(changes, ["http://b:1 down: no answer within 50 ms"]);
  let ran = false;
  await assert.rejects(
    breaker.policy("http://b:1").execute(async () => {
      ran = true;
    }),
    (err: Error) => isRecoverableError(err) && /is down/.test(err.message),
  );
  assert.equal(ran, false, "a refused call is not sent");
  assert.equal(await breaker.policy("http://a:1").execute(async () => 7), 7);
  health["http://b:1"] = "up";
  await breaker.probeAll();
  assert.equal(breaker.refuses("http://b:1"), false);
  assert.equal(changes.at(-1), "http://b:1 up: answers again");
});

test("a member whose probe fails is down too; an error from a call is passed on as it is", async () => {
  const breaker = breakerWith({ "http://a:1": "down", "http://b:1": "up", "http://c:1": "up" });
  await breaker.probeAll();
  assert.equal(breaker.refuses("http://a:1"), true);
  const boom = new Error("boom");
  await assert.rejects(
    breaker.policy("http://b:1").execute(async () => {
      throw boom;
    }),
    (err) => err === boom,
  );
});

test("when no member answers, none is taken down: the fault is more likely on this side", async () => {
  const changes: string[] = [];
  const breaker = breakerWith(
    { "http://a:1": "silent", "http://b:1": "down", "http://c:1": "silent" },
    changes,
  );
  await breaker.probeAll();
  assert.deepEqual(breaker.up, MEMBERS);
  assert.deepEqual(changes, []);
});

test("when every member is down none is refused", async () => {
  const health: Health = {
    "http://a:1": "up",
    "http://b:1": "down",
    "http://c:1": "down",
  };
  const breaker = breakerWith(health);
  await breaker.probeAll();
  assert.equal(breaker.refuses("http://b:1"), true);
  // a goes down in a round where b answers again, then b in a round where a answers: each time one is up.
  health["http://a:1"] = "down";
  health["http://b:1"] = "up";
  await breaker.probeAll();
  assert.deepEqual(breaker.up, ["http://b:1"]);
  assert.equal(breaker.refuses("http://a:1"), true);
  assert.equal(breaker.refuses("http://b:1"), false);
});

test("a member going down fails its calls in flight (recoverable, so retried elsewhere) and cancels its streams", async () => {
  const health = allUp();
  const breaker = breakerWith(health);
  const policy = breaker.policy("http://b:1");
  // A unary call that never answers (the member was cut off after it was sent).
  const hanging = policy.execute(() => new Promise<never>(() => {}));
  // A stream open on the member (a watch): the client reconnects it when it ends.
  let cancelled = 0;
  const stream = Object.assign(new EventEmitter(), { cancel: () => cancelled++ });
  assert.equal(await policy.execute(() => stream), stream);
  // A stream already closed is forgotten.
  const closed = Object.assign(new EventEmitter(), {
    cancel: () => assert.fail("a closed stream is not cancelled"),
  });
  await policy.execute(() => closed);
  closed.emit("close");
  health["http://b:1"] = "silent";
  const started = Date.now();
  await breaker.probeAll();
  await assert.rejects(
    hanging,
    (err: Error) => isRecoverableError(err) && /stopped answering/.test(err.message),
  );
  assert.ok(Date.now() - started < 1000);
  assert.equal(cancelled, 1);
});

test("a write sent with sentOnce is not failed in flight when its member goes down, but not sent to one down", async () => {
  const health = allUp();
  const breaker = breakerWith(health);
  const policy = breaker.policy("http://b:1");
  const write = sentOnce(() =>
    policy.execute(() => new Promise<string>((r) => setTimeout(r, 150, "committed"))),
  );
  const read = policy.execute(() => new Promise<never>(() => {}));
  health["http://b:1"] = "silent";
  await breaker.probeAll();
  await assert.rejects(read, /stopped answering/);
  assert.equal(await write, "committed", "the write was failed in flight: the client would send it again");
  let sent = false;
  const refused: SentWrite = { inDoubt: false };
  await assert.rejects(
    sentOnce(
      () =>
        policy.execute(async () => {
          sent = true;
        }),
      refused,
    ),
    /is down/,
  );
  assert.equal(sent, false);
  assert.equal(refused.inDoubt, false, "a write never sent cannot have been committed");
});

test("a sent write whose attempt fails is marked in doubt: it may have been committed", async () => {
  const policy = breakerWith(allUp()).policy("http://a:1");
  const ok: SentWrite = { inDoubt: false };
  await sentOnce(() => policy.execute(async () => "committed"), ok);
  assert.equal(ok.inDoubt, false);
  const lost: SentWrite = { inDoubt: false };
  await assert.rejects(
    sentOnce(
      () =>
        policy.execute(async () => {
          throw new Error("connection reset");
        }),
      lost,
    ),
    /reset/,
  );
  assert.equal(lost.inDoubt, true);
});

test("rounds do not overlap: a round still waiting on a silent member is the one a second call waits for", async () => {
  let probes = 0;
  const breaker = new MemberBreaker({
    members: MEMBERS,
    probeTimeoutMs: 100,
    probe: async (member) => {
      probes++;
      if (member === "http://c:1") await new Promise<never>(() => {});
    },
  });
  await Promise.all([breaker.probeAll(), breaker.probeAll()]);
  assert.equal(probes, 3);
  assert.equal(breaker.refuses("http://c:1"), true);
});

test("start probes on its own every interval; stop ends it", async () => {
  let probes = 0;
  const breaker = new MemberBreaker({
    members: MEMBERS,
    intervalMs: 20,
    probe: async () => {
      probes++;
    },
  });
  breaker.start();
  await new Promise((resolve) => setTimeout(resolve, 200));
  breaker.stop();
  const seen = probes;
  assert.ok(seen >= 6, `probed ${seen} times in 200 ms`);
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(probes, seen);
});
