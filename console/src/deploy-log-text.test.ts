import assert from "node:assert/strict";
import { test } from "node:test";
import { deployLogText } from "./deploy-log-text.ts";

test("a deploy's log reads as herd deploy prints it, each entry after its time", () => {
  const at = (s: number) => `2026-12-07T13:59:${String(s).padStart(2, "0")}.000Z`;
  assert.equal(
    deployLogText([
      { time: at(8), type: "build", message: "-----> Unpacking source c33a70d8a498" },
      { time: at(8), type: "build", message: "       web: node server.js" },
      { time: at(8), type: "step", message: "Release v1 created (Deploy c33a70d)" },
      { time: at(9), type: "step", message: "web: release phase output:" },
      { time: at(9), type: "build", message: "  web release | step one" },
      { time: at(10), type: "health", message: "web-1: GET /healthz → 503\nnot ready" },
      {
        time: at(12),
        type: "done",
        message: "v1 is serving at http://relp.localhost:8080/",
        state: "succeeded",
      },
    ]),
    [
      "13:59:08 -----> Unpacking source c33a70d8a498",
      "13:59:08        web: node server.js",
      "13:59:08 -----> Release v1 created (Deploy c33a70d)",
      "13:59:09 -----> web: release phase output:",
      "13:59:09          web release | step one",
      "13:59:10        web-1: GET /healthz → 503",
      "                not ready",
      "13:59:12 -----> v1 is serving at http://relp.localhost:8080/",
    ].join("\n"),
  );
});
