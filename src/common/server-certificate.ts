/**
 * Making a server certificate (EC P-256, SHA-256, for DNS names and IP
 * addresses): signed by a CA (api/local-ca.ts) or self-signed (the
 * development certificate of `herd gateway`, gateway/tls.ts).
 */

/** A certificate and its key, PEM, and when it expires. */
export interface IssuedCertificate {
  cert: string;
  key: string;
  /** Expiry (ms since the epoch). */
  notAfter: number;
  /** Start of validity (ms since the epoch). */
  notBefore: number;
}

/** selfsigned (and @peculiar/x509 under it: ~20 MB) is loaded only when a certificate is made. */
export const generateCertificate: typeof import("selfsigned").generate = async (...args) =>
  (await import("selfsigned")).generate(...args);

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
