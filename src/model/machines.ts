/**
 * Machines asked of a machine provider (a command or a webhook the operator
 * names with `--machine-provider`): what herd stores about each request, and
 * the JSON it sends the provider (docs/machine-provider.md). Part of the wire
 * contract; depends on nothing but objects.ts.
 *
 * Key of a stored MachineRequest: its id (`m-<random>`).
 */

import type { Taint } from "./objects.ts";

/** What one kind of missing capacity needs: instances that want the same labels and tolerations. */
export interface MachineNeed {
  /** Instances that fit on no node. */
  instances: number;
  /** Their CPU (cores) and memory (bytes) in all. */
  cpu: number;
  memory: number;
  /** The largest single instance: a machine smaller than this takes none of them. */
  largest: { cpu: number; memory: number };
  /** Labels a new machine must carry (`herd agent --label k=v`): the services' placement.nodeSelector. */
  labels: Record<string, string>;
  /** Taints the instances tolerate (a new machine may carry them; none is fine too). */
  tolerations: Taint[];
  /** Who is waiting, and what the scheduler said. */
  services: { tenant: string; app: string; service: string; instances: number; message: string }[];
}

/** One of a request's machines: a node that joined with its join token. */
export interface MachineNode {
  name: string;
  joinedAt: string;
  /** joined → releasing (cordoned, idle) → released (provider handed it back; node removed once its agent is gone). */
  state: "joined" | "releasing" | "released";
  /** When it was cordoned to be handed back. */
  cordonedAt?: string;
  /** The last release call that failed (retried after the cooldown). */
  releaseFailedAt?: string;
}

/** A stored request for machines, from the ask until its last machine is handed back. */
export interface MachineRequest {
  id: string;
  /** requested: the provider was (or is being) asked; joined: at least one machine came; failed: none will. */
  state: "requested" | "joined" | "failed";
  requestedAt: string;
  /** The join token minted for it (its public id; the secret went to the provider only). */
  joinToken: string;
  /** Machines may join until then (the join token expires then too). */
  joinBy: string;
  /** How many machines its join token admits. */
  machines: number;
  needs: MachineNeed[];
  nodes: MachineNode[];
  /** Why it failed, or the provider's own message. */
  message: string;
  failedAt?: string;
}

/** What herd sends the provider (stdin of a command, body of a webhook POST). */
export type ProviderRequest =
  | {
      version: 1;
      action: "request";
      /** The request's id, named in herd's events. */
      id: string;
      /** The control plane agents join: `herd agent --server <server> --join-token <joinToken>`. */
      server: string;
      /** With an HTTPS control plane: its CA certificate (PEM), for `herd agent --ca`. */
      ca?: string;
      joinToken: string;
      joinBy: string;
      /** At most this many machines may join with the token. */
      machines: number;
      needs: MachineNeed[];
    }
  | {
      version: 1;
      action: "release";
      /** The request whose machine this was. */
      id: string;
      server: string;
      /** The node to hand back: cordoned, without instances; its credential is revoked once this succeeds. */
      node: string;
    };

/** What a provider may answer (stdout of a command, body of a webhook's 2xx); everything is optional. */
export interface ProviderAnswer {
  /** Shown in herd's event. */
  message?: string;
}
