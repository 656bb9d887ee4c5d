// debian-packages' boot-link bookkeeping on a fake root: the links an install
// adds are found and removed, the ones that were there stay.

import assert from "node:assert/strict";
import { lstatSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { bootLinks, disableNewBootServices, serviceOfLink } from "./debian-packages.ts";

/** Whether the link itself is there (its target never is). */
const there = (path: string) => lstatSync(path, { throwIfNoEntry: false }) !== undefined;

test("the services an install left to start at boot are found and their links removed", (t) => {
  const root = mkdtempSync(join(tmpdir(), "herd-ensure-tools-"));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const link = (dir: string, name: string, target = "/lib/systemd/system/x.service") => {
    mkdirSync(join(root, dir), { recursive: true });
    symlinkSync(target, join(root, dir, name));
    return join(root, dir, name);
  };
  const wants = "etc/systemd/system/multi-user.target.wants";
  const old = [link(wants, "postgresql.service"), link("etc/rc2.d", "S01postgresql")];
  link("etc/rc0.d", "K01postgresql");
  const before = bootLinks(root);
  assert.deepEqual([...before].sort(), old.sort(), "S links and wants entries only");

  // What installing prometheus does: a systemd link and SysV start links (and stop links).
  const added = [
    link(wants, "prometheus.service"),
    link("etc/rc2.d", "S01prometheus"),
    link("etc/rc5.d", "S01prometheus"),
    link("etc/systemd/system/timers.target.wants", "prometheus-scrape.timer"),
  ];
  link("etc/rc0.d", "K01prometheus");
  assert.deepEqual(disableNewBootServices(before, root), ["prometheus", "prometheus-scrape.timer"]);
  for (const l of added) assert.equal(there(l), false, l);
  for (const l of old) assert.ok(there(l), l);
  assert.ok(there(join(root, "etc/rc0.d/K01prometheus")), "a stop link stays");
  assert.deepEqual(disableNewBootServices(bootLinks(root), root), []);
  assert.equal(serviceOfLink("/etc/rc3.d/S02nginx"), "nginx");
  assert.equal(serviceOfLink("/etc/systemd/system/multi-user.target.wants/nginx.service"), "nginx");
});
