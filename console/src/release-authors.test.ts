import assert from "node:assert/strict";
import { test } from "node:test";
import type { AuditEntry } from "./api-types.ts";
import { needsAudit, type ReleaseView, releaseAuthors } from "./release-authors.ts";

const release = (version: number, createdAt: string, extra: Partial<ReleaseView> = {}): ReleaseView => ({
  tenant: "t",
  app: "a",
  version,
  createdAt,
  description: `Deploy ${version}`,
  source: "s",
  slug: "s",
  services: {},
  current: false,
  ...extra,
});
const call = (at: string, actor: string, route: string, status = 202): AuditEntry => ({
  at,
  actor,
  route,
  path: "/api/v1/apps/a/x",
  status,
  app: "a",
});
const DEPLOY = "POST /api/v1/apps/:app/deploys";
const ROLLBACK = "POST /api/v1/apps/:app/rollback";

test("each release gets the call that made it: deploys before, rollbacks and secrets just after", () => {
  const releases = [
    release(1, "2026-01-01T10:00:30Z"),
    release(2, "2026-01-01T11:00:40Z"),
    // A quick build: the release was made before the deploy call's reply left.
    release(6, "2026-01-01T15:00:00.200Z"),
    release(3, "2026-01-01T12:00:00.100Z", { rollbackOf: 1, description: "Rollback to v1" }),
    release(4, "2026-01-01T13:00:00Z", { description: "Secret DB changed (content of v3)" }),
    release(5, "2026-01-01T14:00:00Z", { rollbackOf: 2, description: "Rollback to v2" }),
  ];
  const audit = [
    call("2026-01-01T10:00:00Z", "user alice", DEPLOY),
    call("2026-01-01T10:30:00Z", "user mallory", DEPLOY, 403), // refused: made nothing
    call("2026-01-01T10:59:00Z", "user erin", DEPLOY), // its build failed: no release
    call("2026-01-01T11:00:00Z", "user bob", DEPLOY),
    call("2026-01-01T15:00:00.300Z", "user frank", DEPLOY),
    call("2026-01-01T12:00:00.150Z", "user carol", ROLLBACK),
    call("2026-01-01T13:00:00.050Z", "user dave", "PUT /api/v1/apps/:app/secrets/:name", 200),
  ];
  const who = releaseAuthors(releases, audit);
  assert.deepEqual(
    [...who],
    [
      [1, "user alice"],
      [2, "user bob"],
      [3, "user carol"],
      [4, "user dave"],
      // No call: the remediation engine rolled back on its own.
      [5, "—"],
      [6, "user frank"],
    ],
  );
});

test("a release that records who made it needs no audit entry, and takes none from an older one", () => {
  const releases = [
    release(1, "2026-01-01T10:00:30Z"),
    release(2, "2026-01-01T10:00:31Z", { createdBy: "user zoe" }),
    release(3, "2026-01-01T12:00:00Z", {
      rollbackOf: 1,
      description: "Rollback to v1",
      createdBy: "remediation",
    }),
  ];
  // v2's deploy call is the last one in v1's window too: v2 takes it, and v1 (made before releases
  // recorded it) takes its own.
  const audit = [
    call("2026-01-01T10:00:00Z", "user alice", DEPLOY),
    call("2026-01-01T10:00:29Z", "user zoe", DEPLOY),
  ];
  assert.deepEqual(
    [...releaseAuthors(releases, audit)],
    [
      [1, "user alice"],
      [2, "user zoe"],
      [3, "remediation"],
    ],
  );
  assert.equal(needsAudit(releases), true);
  assert.equal(needsAudit(releases.slice(1)), false);
  assert.deepEqual(
    [...releaseAuthors(releases.slice(1), [])],
    [
      [2, "user zoe"],
      [3, "remediation"],
    ],
  );
});
