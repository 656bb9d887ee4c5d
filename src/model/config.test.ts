import assert from "node:assert/strict";
import { test } from "node:test";
import { formatOfName } from "./config.ts";

test("a config file's format follows its name's extension, any case; text when none fits", () => {
  assert.equal(formatOfName("app.json"), "json");
  assert.equal(formatOfName("app.YAML"), "yaml");
  assert.equal(formatOfName("app.yml"), "yaml");
  assert.equal(formatOfName("db.properties"), "properties");
  assert.equal(formatOfName("motd"), "text");
  assert.equal(formatOfName("notes.txt"), "text");
});
