import assert from "node:assert/strict";
import { test } from "node:test";
import { hedge } from "./hedge.ts";

const TIMING = { afterMs: 60, everyMs: 30 };

/** A send whose servers answer after `delays[server]` ms with the server's name, "fail" rejects, -1 never answers. */
function sender(delays: Record<string, number | "fail">) {
  const sent: { server: string; at: number }[] = [];
  const aborted: string[] = [];
  const started = Date.now();
  const send = (server: string, signal: AbortSignal) => {
    sent.push({ server, at: Date.now() - started });
    return new Promise<string>((resolve, reject) => {
      signal.addEventListener("abort", () => {
        aborted.push(server);
        reject(signal.reason);
      });
      const d = delays[server];
      if (d === "fail") setTimeout(() => reject(new Error(`${server} refused`)), 5);
      else if (d >= 0) setTimeout(() => resolve(server), d);
    });
  };
  return { send, sent, aborted };
}

test("hedge: a server that answers in time is the only one asked", async () => {
  const s = sender({ a: 10, b: 10 });
  assert.deepEqual(await hedge(["a", "b"], s.send, TIMING), { server: "a", answer: "a" });
  assert.deepEqual(
    s.sent.map((x) => x.server),
    ["a"],
  );
});

test("hedge: a silent server: the next is asked after afterMs, then another every everyMs; the first answer wins and the rest are aborted", async () => {
  const s = sender({ a: -1, b: -1, c: 20 });
  const won = await hedge(["a", "b", "c"], s.send, TIMING);
  assert.deepEqual(won, { server: "c", answer: "c" });
  assert.deepEqual(
    s.sent.map((x) => x.server),
    ["a", "b", "c"],
  );
  assert.ok(s.sent[1].at >= 55, `b asked at ${s.sent[1].at} ms`);
  assert.ok(s.sent[2].at - s.sent[1].at >= 25, `c asked ${s.sent[2].at - s.sent[1].at} ms after b`);
  assert.deepEqual(s.aborted.sort(), ["a", "b"]);
});

test("hedge: a refusal passes the request on at once; all refused is the last error", async () => {
  const s = sender({ a: "fail", b: 10 });
  assert.equal((await hedge(["a", "b"], s.send, TIMING)).server, "b");
  assert.ok(s.sent[1].at < 40, `b asked ${s.sent[1].at} ms after the start`);
  const all = sender({ a: "fail", b: "fail" });
  await assert.rejects(hedge(["a", "b"], all.send, TIMING), /b refused/);
});

test("hedge: a late answer that lost is discarded; the caller's signal aborts every attempt", async () => {
  const s = sender({ a: 100, b: 10 });
  const discarded: string[] = [];
  const won = await hedge(["a", "b"], s.send, { ...TIMING, discard: (x) => discarded.push(x) });
  assert.equal(won.server, "b");
  assert.deepEqual(s.aborted, ["a"], "the loser was aborted");
  const c = sender({ a: -1, b: -1 });
  const caller = new AbortController();
  setTimeout(() => caller.abort(new Error("deadline")), 120);
  await assert.rejects(hedge(["a", "b"], c.send, { ...TIMING, signal: caller.signal }), /deadline/);
  assert.deepEqual(c.aborted.sort(), ["a", "b"]);
});

test("hedge: an answer passOn refuses does not win over one still to come, and is the result when none comes", async () => {
  // a answers late; b at once with an answer passed on (a follower's 503 naming a).
  const s = sender({ a: 120, b: 5 });
  const discarded: string[] = [];
  const options = { ...TIMING, passOn: (x: string) => x === "b", discard: (x: string) => discarded.push(x) };
  assert.deepEqual(await hedge(["a", "b"], s.send, options), { server: "a", answer: "a" });
  assert.deepEqual(discarded, ["b"], "the answer kept is released when a better one wins");
  assert.deepEqual(s.aborted, [], "a, still to answer, was not aborted by b's answer");
  // a fails: the answer kept is the result, not a's error.
  const f = sender({ a: "fail", b: 5 });
  assert.deepEqual(await hedge(["a", "b"], f.send, options), { server: "b", answer: "b" });
});
