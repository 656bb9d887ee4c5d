/**
 * What gateways need for HTTPS and ACME (gateway credentials and platform admins only):
 *
 *   GET /gateways/certificates/:host      the host's certificate and key (ACME or herd's CA); 404 when no route names it
 *   GET /gateways/acme-challenges/:token  the key authorization of an HTTP-01 challenge in progress; 404 otherwise
 */

import { Type as T } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { notFound } from "../../common/errors.ts";
import type { ApiDeps } from "../deps.ts";

/** A DNS name as SNI carries it: labels of letters, digits, `-` and `_`, at most 253 characters. */
const HOST_PATTERN =
  "^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\\.?$";

const HostParams = T.Object({
  host: T.String({ pattern: HOST_PATTERN, description: "a DNS name (the TLS client's SNI name)" }),
});

const TokenParams = T.Object({
  // RFC 8555 8.3: base64url, at least 128 bits of entropy.
  token: T.String({ pattern: "^[A-Za-z0-9_-]{1,256}$", description: "the HTTP-01 challenge token" }),
});

export function certificateRoutes(api: FastifyInstance, deps: ApiDeps): void {
  const { certificates } = deps;

  api.get(
    "/gateways/certificates/:host",
    {
      schema: {
        summary: "A routed host's TLS certificate and key, for gateways terminating HTTPS",
        description:
          "The host's ACME certificate when the server uses ACME for it and has one, else one signed by herd's own CA (its file is the `caFile` of the answer). 404 when no route names the host: herd signs nothing for names it does not serve.",
        tags: ["gateways"],
        params: HostParams,
      },
    },
    async (req) => {
      const host = (req.params as { host: string }).host.toLowerCase().replace(/\.$/, "");
      const cert = await certificates.forHost(host);
      if (cert === undefined)
        throw notFound(`no route serves host ${host}: herd issues certificates only for routed hosts`);
      return cert;
    },
  );

  api.get(
    "/gateways/acme-challenges/:token",
    {
      schema: {
        summary: "The key authorization a gateway answers an ACME HTTP-01 challenge with",
        tags: ["gateways"],
        params: TokenParams,
      },
    },
    async (req) => {
      const token = (req.params as { token: string }).token;
      const keyAuthorization = certificates.acme?.challenge(token);
      if (keyAuthorization === undefined) throw notFound(`no ACME challenge ${token} is in progress`);
      return { keyAuthorization };
    },
  );
}
