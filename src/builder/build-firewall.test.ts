import assert from "node:assert/strict";
import { test } from "node:test";
import { buildFirewallScript, localPortsOf } from "./build-firewall.ts";

test("the build rule resets the build uids' connections to this machine but DNS and the ports it is given", () => {
  const script = buildFirewallScript("herd_build_x", { first: 1000, count: 10 }, [3128, 53]);
  assert.match(
    script,
    /meta skuid 1000-1009 tcp flags & \(syn \| ack\) == syn oifname "lo" tcp dport != \{ 53, 3128 \} reject with tcp reset/,
  );
  assert.match(buildFirewallScript("herd_build_x", { first: 1000, count: 10 }), /tcp dport != 53 reject/);
  // Replaced whole in one transaction, even when it did not exist.
  assert.match(
    script,
    /^table inet herd_build_x \{\}\ndelete table inet herd_build_x\ntable inet herd_build_x \{/,
  );
});

test("a proxy or registry on this machine opens its port; one elsewhere or no URL opens none", () => {
  const own = ["10.1.2.3"];
  assert.deepEqual(
    localPortsOf(
      {
        HTTPS_PROXY: "http://127.0.0.1:3128",
        http_proxy: "http://localhost",
        npm_config_registry: "https://10.1.2.3/npm/",
        NO_PROXY: "localhost,.internal",
        HTTP_PROXY: "http://proxy.example.com:8080",
        no_url: "[::1]:9",
      },
      own,
    ),
    [3128, 80, 443],
  );
  assert.deepEqual(localPortsOf({ HTTPS_PROXY: "http://[::1]:3129" }, own), [3129]);
});
