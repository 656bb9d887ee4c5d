// What a heartbeat says of one instance (toStatus): only what the API takes.

import assert from "node:assert/strict";
import { test } from "node:test";
import { newManaged, toStatus } from "./managed-instance.ts";

test("a stopped container's pid 0 is not sent: the API refuses a pid below 1, and with it the whole heartbeat", () => {
  // The docker driver recovers a stopped container with the engine's State.Pid, which is 0.
  const stopped = toStatus(newManaged("boxed-web-1", 1, "stopped", "/nowhere", { pid: 0, port: 23681 }));
  assert.equal(stopped.pid, undefined);
  assert.equal(stopped.state, "stopped");
  const running = toStatus(newManaged("boxed-web-2", 1, "up", "/nowhere", { pid: 4242, port: 23682 }));
  assert.equal(running.pid, 4242);
});
