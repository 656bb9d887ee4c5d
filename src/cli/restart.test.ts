// What `herd restart` says while it waits.

import assert from "node:assert/strict";
import { test } from "node:test";
import type { Instance } from "../model/objects.ts";
import { waitingFor } from "./restart.ts";

const instance = (id: string, mode: "cattle" | "pet", state: string) => ({ id, mode, state }) as Instance;

test("herd restart waits for the old cattle to go and the new to run; a pet restarts in place, not new", () => {
  assert.equal(
    waitingFor([instance("web-a", "cattle", "running")], [instance("web-b", "cattle", "provisioning")]),
    "1 to go (web-a) and 1 new to run (web-b provisioning)",
  );
  // Nothing left to go is not said as "0 to go (none)".
  assert.equal(
    waitingFor([], [instance("db-0", "pet", "provisioning")]),
    "1 restarted in place to run (db-0 provisioning)",
  );
});
