// Who is signed in: the token (sessionStorage, or localStorage when "remember"
// was ticked), whoami's answer, the tenant chosen and what the role there may do.
// The role table is the API's own (src/api/permissions.ts): a button is shown
// only when the API would let it through.

import { createContext, useContext } from "react";
import { type Permission, ROLE_PERMISSIONS } from "../../src/api/permissions.ts";
import type { Role } from "../../src/model/identity.ts";
import { Client } from "./api.ts";

/** GET /whoami. */
export interface Whoami {
  name: string;
  kind: string;
  user?: string;
  admin: boolean;
  tenants: { tenant: string; role: Role | "admin" }[];
  token: { id: string; name: string; expiresAt?: string };
}

export interface Session {
  client: Client;
  whoami: Whoami;
  tenant: string;
  /** The role in the chosen tenant ("admin" for a platform admin). */
  role: Role | "admin";
  /** May this identity use `permission` in the chosen tenant? */
  can(permission: Permission): boolean;
  setTenant(tenant: string): void;
  /** Asks whoami again (a tenant made or a role changed): every page's data is read anew. */
  refresh(): Promise<void>;
  signOut(): void;
}

const TOKEN = "herd.token";
const TENANT = "herd.tenant";

export function storedToken(): string | undefined {
  return sessionStorage.getItem(TOKEN) ?? localStorage.getItem(TOKEN) ?? undefined;
}

export function storeToken(token: string, remember: boolean): void {
  (remember ? localStorage : sessionStorage).setItem(TOKEN, token);
}

export function forgetToken(): void {
  sessionStorage.removeItem(TOKEN);
  localStorage.removeItem(TOKEN);
}

export function storedTenant(): string | undefined {
  return localStorage.getItem(TENANT) ?? undefined;
}

export function storeTenant(tenant: string): void {
  localStorage.setItem(TENANT, tenant);
}

/** The tenant to act in: the URL's `?tenant=`, else the last one chosen, else the first one. */
export function chooseTenant(whoami: Whoami, fromUrl: string | null): string {
  const names = whoami.tenants.map((t) => t.tenant);
  if (fromUrl && (whoami.admin || names.includes(fromUrl))) return fromUrl;
  const last = storedTenant();
  if (last && names.includes(last)) return last;
  return names.includes("default") && whoami.admin ? "default" : (names[0] ?? "default");
}

export function makeSession(
  token: string,
  whoami: Whoami,
  tenant: string,
  actions: Pick<Session, "setTenant" | "refresh" | "signOut">,
): Session {
  const role = whoami.admin ? "admin" : (whoami.tenants.find((t) => t.tenant === tenant)?.role ?? "viewer");
  return {
    client: new Client(token, tenant),
    whoami,
    tenant,
    role,
    can: (p) => whoami.admin || (role !== "admin" && ROLE_PERMISSIONS[role].has(p)),
    ...actions,
  };
}

export const SessionContext = createContext<Session | undefined>(undefined);

export function useSession(): Session {
  const s = useContext(SessionContext);
  if (!s) throw new Error("useSession outside a signed-in page");
  return s;
}
