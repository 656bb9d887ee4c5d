import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import { HerdError } from "./errors.ts";
import { embeddedIpv4, UrlGuard } from "./url-guard.ts";

let server: http.Server;
let port = 0;
/** Requests the test server received, by path. */
const seen: string[] = [];

before(async () => {
  server = http.createServer((req, res) => {
    seen.push(req.url ?? "");
    if (req.url === "/redirect") {
      res.writeHead(302, { location: "http://169.254.169.254/latest/meta-data/" });
      res.end();
    } else if (req.url === "/big") {
      res.writeHead(200, { "content-length": "5000" });
      res.end("x".repeat(5000));
    } else if (req.url === "/big-chunked") {
      res.writeHead(200);
      for (let i = 0; i < 10; i++) res.write("y".repeat(1000));
      res.end();
    } else if (req.url === "/silent") {
      // Never answers.
    } else {
      res.writeHead(200, { "content-type": "text/plain", "x-host": req.headers.host ?? "" });
      res.end("hello");
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as AddressInfo).port;
});

after(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

const refusedEach: [string, RegExp][] = [
  ["0.0.0.0", /unspecified/],
  ["0.1.2.3", /unspecified/],
  ["10.20.30.40", /private/],
  ["100.64.0.1", /CGNAT/],
  ["100.127.255.254", /CGNAT/],
  ["127.0.0.1", /loopback/],
  ["127.255.0.9", /loopback/],
  ["169.254.169.254", /link-local/],
  ["172.16.0.1", /private/],
  ["172.31.255.255", /private/],
  ["192.0.0.8", /IETF/],
  ["192.168.0.1", /private/],
  ["198.18.0.1", /benchmarking/],
  ["224.0.0.251", /multicast/],
  ["239.255.255.250", /multicast/],
  ["255.255.255.255", /reserved/],
  ["::", /unspecified/],
  ["::1", /loopback/],
  ["fc00::1", /unique-local/],
  ["fd12:3456::1", /unique-local/],
  ["fe80::1", /link-local/],
  ["fe80::1%eth0", /link-local/],
  ["fec0::1", /site-local/],
  ["ff02::1", /multicast/],
  // IPv6 forms that carry an IPv4 address are judged as that address.
  ["::ffff:127.0.0.1", /loopback/],
  ["::ffff:7f00:1", /loopback/],
  ["0:0:0:0:0:ffff:a00:1", /private/],
  ["::127.0.0.1", /loopback/],
  ["64:ff9b::10.0.0.1", /private/],
  ["64:ff9b::a9fe:a9fe", /link-local/],
  ["2002:c0a8:0101::1", /private/],
];

test("every internal range is refused, named, with the flag that allows it", () => {
  const guard = new UrlGuard();
  for (const [address, kind] of refusedEach) {
    const why = guard.refusal(address);
    assert.ok(why !== null, `${address} should be refused`);
    assert.match(why, kind, address);
    assert.match(why, /--allow-fetch/, address);
  }
});

test("public addresses pass", () => {
  const guard = new UrlGuard();
  for (const address of [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "172.32.0.1",
    "100.128.0.1",
    "2606:4700::1111",
  ]) {
    assert.equal(guard.refusal(address), null, address);
  }
  assert.equal(guard.refusal("::ffff:8.8.8.8"), null);
});

test("embeddedIpv4 reads mapped, compatible, NAT64 and 6to4 forms", () => {
  assert.equal(embeddedIpv4("::ffff:10.1.2.3"), "10.1.2.3");
  assert.equal(embeddedIpv4("::ffff:a01:203"), "10.1.2.3");
  assert.equal(embeddedIpv4("64:ff9b::7f00:1"), "127.0.0.1");
  assert.equal(embeddedIpv4("2002:7f00:1::"), "127.0.0.1");
  assert.equal(embeddedIpv4("::1"), null);
  assert.equal(embeddedIpv4("2001:db8::1"), null);
});

test("the allow list lets a range through, in IPv4-mapped form too, and nothing else", () => {
  const guard = new UrlGuard({ allow: UrlGuard.parseAllowList(["127.0.0.0/8, 10.1.0.0/16", "::1"]) });
  assert.deepEqual(guard.allowed, ["127.0.0.0/8", "10.1.0.0/16", "::1"]);
  assert.equal(guard.refusal("127.0.0.1"), null);
  assert.equal(guard.refusal("127.9.9.9"), null);
  assert.equal(guard.refusal("::ffff:127.0.0.1"), null);
  assert.equal(guard.refusal("::1"), null);
  assert.equal(guard.refusal("10.1.200.1"), null);
  assert.match(guard.refusal("10.2.0.1") ?? "", /private/);
  assert.match(guard.refusal("192.168.1.1") ?? "", /private/);
  assert.match(guard.refusal("169.254.169.254") ?? "", /link-local/);
});

test("a bad allow list entry is a HerdError naming the flag and the entry", () => {
  for (const bad of ["10.0.0.0/33", "nonsense", "10.0.0/8", "::1/129", "10.0.0.0/x"]) {
    assert.throws(
      () => UrlGuard.parseAllowList([bad]),
      (err: unknown) =>
        err instanceof HerdError && err.code === "invalid" && /--allow-fetch/.test(err.message),
      bad,
    );
  }
});

test("a loopback URL is refused before any connection; allowed, it is fetched", async () => {
  const before = seen.length;
  await assert.rejects(new UrlGuard().fetch(`http://127.0.0.1:${port}/x`), (err: unknown) => {
    assert.ok(err instanceof HerdError);
    assert.equal(err.code, "forbidden");
    assert.match(err.message, /127\.0\.0\.1 is a loopback address/);
    return true;
  });
  await assert.rejects(new UrlGuard().fetch(`http://[::ffff:127.0.0.1]:${port}/x`), /loopback/);
  // Other spellings of 127.0.0.1 (the URL parser normalises them) are the same address.
  for (const host of ["2130706433", "0x7f.0.0.1", "0177.0.0.1", "127.1"]) {
    await assert.rejects(
      new UrlGuard().fetch(`http://${host}:${port}/x`),
      /127\.0\.0\.1 is a loopback/,
      host,
    );
  }
  // A name is resolved, and refused for what it resolves to.
  await assert.rejects(
    new UrlGuard().fetch(`http://localhost:${port}/x`),
    /localhost resolves to .*loopback/,
  );
  assert.equal(seen.length, before, "the refused fetches reached nothing");
  const res = await new UrlGuard({ allow: ["127.0.0.1"] }).fetch(`http://127.0.0.1:${port}/x`);
  assert.equal(res.status, 200);
  assert.equal(res.body.toString(), "hello");
});

test("only http and https", async () => {
  const guard = new UrlGuard({ allow: ["127.0.0.0/8"] });
  await assert.rejects(guard.fetch("file:///etc/passwd"), /file: URLs are not fetched/);
  await assert.rejects(guard.fetch("ftp://127.0.0.1/x"), /ftp: URLs are not fetched/);
  await assert.rejects(guard.fetch("not a url"), /is not a URL/);
});

test("a redirect is refused, not followed", async () => {
  const guard = new UrlGuard({ allow: ["127.0.0.0/8"] });
  const before = seen.length;
  await assert.rejects(guard.fetch(`http://127.0.0.1:${port}/redirect`), (err: unknown) => {
    assert.ok(err instanceof HerdError);
    assert.equal(err.code, "forbidden");
    assert.match(err.message, /answered 302 .*follows no redirects/);
    return true;
  });
  assert.deepEqual(seen.slice(before), ["/redirect"]);
});

test("bodies over the cap fail, by Content-Length and while streaming", async () => {
  const guard = new UrlGuard({ allow: ["127.0.0.0/8"] });
  await assert.rejects(guard.fetch(`http://127.0.0.1:${port}/big`, { maxBytes: 4096 }), (err: unknown) => {
    assert.ok(err instanceof HerdError);
    assert.equal(err.code, "too_large");
    assert.match(err.message, /more than 4096 bytes/);
    return true;
  });
  await assert.rejects(
    guard.fetch(`http://127.0.0.1:${port}/big-chunked`, { maxBytes: 4096 }),
    /more than 4096 bytes/,
  );
  const ok = await guard.fetch(`http://127.0.0.1:${port}/big`, { maxBytes: 5000 });
  assert.equal(ok.body.length, 5000);
});

test("a silent server times out", async () => {
  const guard = new UrlGuard({ allow: ["127.0.0.0/8"] });
  const started = Date.now();
  await assert.rejects(guard.fetch(`http://127.0.0.1:${port}/silent`, { timeoutMs: 300 }), (err: unknown) => {
    assert.equal((err as Error).name, "TimeoutError");
    return true;
  });
  assert.ok(Date.now() - started < 3000);
});

test("DNS rebinding: the name is resolved once and the connection goes to the address checked", async () => {
  let calls = 0;
  // Allowed on the first answer, an address nobody allowed on any later one.
  const resolve = async () => {
    calls++;
    return [{ address: calls === 1 ? "127.0.0.1" : "169.254.169.254", family: 4 }];
  };
  const guard = new UrlGuard({ allow: ["127.0.0.1"], resolve });
  const res = await guard.fetch(`http://rebind.test:${port}/rebind`);
  assert.equal(res.status, 200);
  assert.equal(res.headers["x-host"], `rebind.test:${port}`, "the URL's host name is sent as Host");
  assert.equal(calls, 1, "one resolution for the check and the connection");
  // The next fetch resolves again, and is refused for what it finds.
  await assert.rejects(guard.fetch(`http://rebind.test:${port}/rebind`), /rebind\.test resolves to 169\.254/);
});

test("a name with one internal address among public ones is refused whole", async () => {
  const resolve = async () => [
    { address: "93.184.216.34", family: 4 },
    { address: "10.0.0.7", family: 4 },
  ];
  await assert.rejects(
    new UrlGuard({ resolve }).fetch("http://mixed.test/x"),
    /mixed\.test resolves to 10\.0\.0\.7 is a private address/,
  );
});
