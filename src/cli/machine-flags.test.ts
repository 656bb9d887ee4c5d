import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { machinesOf } from "./machine-flags.ts";

const dir = mkdtempSync(join(tmpdir(), "herd-machine-flags-"));
after(() => rmSync(dir, { recursive: true, force: true }));

test("no --machine-provider: none, and its other flags are refused naming the one missing", () => {
  assert.equal(machinesOf({}), undefined);
  assert.throws(
    () => machinesOf({ "machine-idle": "5m" }),
    /--machine-idle is for a machine provider: add --machine-provider/,
  );
});

test("a command provider with its settings", () => {
  assert.deepEqual(
    machinesOf({
      "machine-provider": "exec:/usr/local/bin/herd-machines",
      "machine-idle": "5m",
      "machine-wait": "3s",
      "machine-max": "4",
    }),
    {
      provider: "exec:/usr/local/bin/herd-machines",
      settings: { idleMs: 300_000, debounceMs: 3000, maxMachines: 4 },
    },
  );
  assert.throws(
    () => machinesOf({ "machine-provider": "exec:/x", "machine-idle": "soon" }),
    /--machine-idle must be a duration/,
  );
  assert.throws(
    () => machinesOf({ "machine-provider": "exec:/x", "machine-max": "0" }),
    /--machine-max must be a whole number/,
  );
  assert.throws(() => machinesOf({ "machine-provider": "exec:x" }), /absolute path/);
});

test("a webhook provider needs a secret file of some length", () => {
  assert.throws(
    () => machinesOf({ "machine-provider": "https://m.example/h" }),
    /--machine-provider-secret-file/,
  );
  const short = join(dir, "short");
  writeFileSync(short, "abc\n");
  assert.throws(
    () => machinesOf({ "machine-provider": "https://m.example/h", "machine-provider-secret-file": short }),
    /16 characters or more/,
  );
  assert.throws(
    () =>
      machinesOf({
        "machine-provider": "https://m.example/h",
        "machine-provider-secret-file": join(dir, "none"),
      }),
    /ENOENT/,
  );
  const good = join(dir, "good");
  writeFileSync(good, "0123456789abcdef0123\n");
  assert.deepEqual(
    machinesOf({ "machine-provider": "https://m.example/h", "machine-provider-secret-file": good }),
    {
      provider: "https://m.example/h",
      secret: "0123456789abcdef0123",
      settings: {},
    },
  );
});
