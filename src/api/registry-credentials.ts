/**
 * What agents need for a registry off loopback (docs/containers.md): one
 * pull-and-push credential for every registry of the control plane, kept
 * through the secret store (`_herd`/`_registry`/`password`, made on first
 * ask), and a TLS certificate for the serving agent's address signed by
 * herd's registry CA (local-ca.ts, `<data>/tls/registry/`). The registry has
 * a CA of its own: engines trust it for the registry's address only
 * (`/etc/docker/certs.d/HOST:PORT/ca.crt`), so a certificate an agent asks
 * for an address cannot pass for the API or a routed host.
 */

import { randomBytes } from "node:crypto";
import { join } from "node:path";
import type { SecretStore } from "../secrets/secret-store.ts";
import { type IssuedCertificate, LocalCa } from "./local-ca.ts";

const TENANT = "_herd";
const SCOPE = "_registry";
const ACTOR = "herd:registry";
/** The one user of herd's registries. */
export const REGISTRY_USER = "herd";

export interface RegistryCredentialsAnswer {
  username: string;
  password: string;
  /** The registry CA's certificate (PEM): what engines and agents verify the registry with. */
  ca: string;
  /** For the serving agent: its certificate and key for the address it serves on. */
  certificate?: IssuedCertificate;
}

export class RegistryCredentials {
  readonly #secrets: SecretStore;
  readonly #ca: LocalCa;
  #password: Promise<string> | undefined;

  private constructor(secrets: SecretStore, ca: LocalCa) {
    this.#secrets = secrets;
    this.#ca = ca;
  }

  static async open(secrets: SecretStore, dataDir: string): Promise<RegistryCredentials> {
    return new RegistryCredentials(secrets, await LocalCa.open(join(dataDir, "tls", "registry")));
  }

  /** The credential (and, with `serveHost`, a certificate for that address or name). */
  async answer(serveHost?: string): Promise<RegistryCredentialsAnswer> {
    return {
      username: REGISTRY_USER,
      password: await this.#passwordOnce(),
      ca: this.#ca.cert,
      ...(serveHost ? { certificate: await this.#ca.issue(serveHost) } : {}),
    };
  }

  /** Read or made once per server process (concurrent first asks get the same one). */
  #passwordOnce(): Promise<string> {
    this.#password ??= this.#readOrMake().catch((err) => {
      this.#password = undefined;
      throw err;
    });
    return this.#password;
  }

  async #readOrMake(): Promise<string> {
    if (await this.#secrets.info(TENANT, SCOPE, "password"))
      return this.#secrets.value(TENANT, SCOPE, "password");
    const password = randomBytes(24).toString("base64url");
    await this.#secrets.set(TENANT, SCOPE, "password", password, ACTOR);
    return password;
  }
}
