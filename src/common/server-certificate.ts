/**
 * Making a server certificate (EC P-256, SHA-256, for DNS names and IP
 * addresses): signed by a CA (api/local-ca.ts) or self-signed (the
 * development certificate of `herd gateway`, gateway/tls.ts).
 */

import { spawn } from "node:child_process";

/** A certificate and its key, PEM, and when it expires. */
export interface IssuedCertificate {
  cert: string;
  key: string;
  /** Expiry (ms since the epoch). */
  notAfter: number;
  /** Start of validity (ms since the epoch). */
  notBefore: number;
}

/**
 * The program that makes one certificate, in a process of its own: selfsigned
 * (and @peculiar/x509 under it) would hold about 20 MB for the life of a
 * process that made its CA or a host's certificate once; a worker thread
 * would leave most of it behind in the allocator too (docs/benchmarks.md,
 * Footprint). The arguments and the result travel over IPC with structured
 * clone, so Dates stay Dates.
 */
const SIGNER = `
process.once("message", async ({ module, args }) => {
  const pems = await (await import(module)).generate(...args);
  process.send(pems, () => process.disconnect());
});
`;

/** selfsigned's generate, run in a short-lived process (see SIGNER). */
export const generateCertificate: typeof import("selfsigned").generate = (...args) =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["-e", SIGNER], {
      stdio: ["ignore", "ignore", "pipe", "ipc"],
      serialization: "advanced",
    });
    let stderr = "";
    child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
      stderr = (stderr + chunk).slice(-2000);
    });
    child.once("message", (pems) =>
      resolve(pems as Awaited<ReturnType<typeof import("selfsigned").generate>>),
    );
    child.once("error", reject);
    child.once("exit", (code, signal) =>
      reject(
        new Error(`making a certificate failed (exit ${signal ?? code}): ${stderr.trim() || "no output"}`),
      ),
    );
    child.send({ module: import.meta.resolve("selfsigned"), args });
  });

const DAY_MS = 86_400_000;

/** DNS names and IP addresses a server certificate names. */
export interface ServerNames {
  dns: string[];
  ips: string[];
}

/**
 * A server certificate for `names`, `days` long with an hour of slack for
 * clocks behind, signed by `ca` (self-signed when it is undefined).
 */
export async function signServerCertificate(
  ca: { cert: string; key: string } | undefined,
  commonName: string,
  names: ServerNames,
  days: number,
): Promise<IssuedCertificate> {
  const notBefore = new Date(Date.now() - 3_600_000);
  const notAfter = new Date(notBefore.getTime() + days * DAY_MS);
  const pems = await generateCertificate([{ name: "commonName", value: commonName }], {
    keyType: "ec",
    algorithm: "sha256",
    notBeforeDate: notBefore,
    notAfterDate: notAfter,
    ...(ca ? { ca: { cert: ca.cert, key: ca.key } } : {}),
    extensions: [
      { name: "basicConstraints", cA: false, critical: true },
      { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
      { name: "extKeyUsage", serverAuth: true },
      {
        name: "subjectAltName",
        altNames: [
          ...names.dns.map((value) => ({ type: 2 as const, value })),
          ...names.ips.map((ip) => ({ type: 7 as const, ip })),
        ],
      },
    ],
  });
  return { cert: pems.cert, key: pems.private, notBefore: notBefore.getTime(), notAfter: notAfter.getTime() };
}
