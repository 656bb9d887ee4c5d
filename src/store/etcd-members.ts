/**
 * A circuit breaker per etcd member, for the etcd3 client's host pool
 * (its `faultHandling.host` policy). Without it a call that lands on a member
 * cut off the network waits its whole deadline (3 s) before it is tried on
 * another member, and the client keeps choosing that member at random.
 *
 *   every intervalMs: status probe ─► member ─┬─ answers, knows a leader ─► up
 *                                             └─ error, no leader, or no answer within probeTimeoutMs ─► down
 *   a call ─► policy(member).execute ─┬─ member up ───► run it (a read: tracked until it ends)
 *                                     └─ member down ─► refused before it is sent: the pool tries the next member
 *   member goes down ─► its reads in flight fail as unavailable (the client retries them elsewhere),
 *                       its streams (watches, lease keepalives) are cancelled (they reconnect elsewhere);
 *                       writes (sentOnce) are left to their deadline: sent again, a committed one
 *                       would be applied twice; a write's attempt that fails marks it in doubt (sent-once.ts)
 *
 * When every member looks down none is refused: the calls then find out for
 * themselves, as without the breaker.
 */

import { GRPCUnavailableError, type IOptions } from "etcd3";
import { Rounds } from "../common/rounds.ts";
import { sentWrite } from "./sent-once.ts";

/** The etcd3 client's per-host policy (cockatiel's IPolicy; only `execute` is used by the client). */
export type HostPolicy = ReturnType<NonNullable<NonNullable<IOptions["faultHandling"]>["host"]>>;

/** Options of MemberBreaker. */
export interface MemberBreakerOptions {
  /** The members as the client names them (its `hosts`). */
  members: string[];
  /** Asks one member whether it serves: resolves when it does, rejects when not. */
  probe(member: string, timeoutMs: number): Promise<void>;
  /** How often every member is probed (default 500 ms). */
  intervalMs?: number;
  /** A probe without an answer this long takes its member down (default 1000 ms). */
  probeTimeoutMs?: number;
  /** Told when a member goes down or comes back. */
  onChange?(member: string, up: boolean, why: string): void;
}

/** What the breaker knows of one member, and its work in flight. */
interface Member {
  up: boolean;
  /** Unary calls in flight: each fails with the error given. */
  calls: Set<(err: Error) => void>;
  /** Streams open on the member. */
  streams: Set<{ cancel(): void }>;
}

/** Health of every member of one cluster, from probes, and the policy that keeps calls off the ones down. */
export class MemberBreaker {
  readonly #members = new Map<string, Member>();
  readonly #probe: MemberBreakerOptions["probe"];
  readonly #intervalMs: number;
  readonly #probeTimeoutMs: number;
  readonly #onChange: NonNullable<MemberBreakerOptions["onChange"]>;
  /** The probe rounds: one at a time (a round due while one runs joins it). */
  readonly #rounds: Rounds;

  constructor(options: MemberBreakerOptions) {
    for (const m of options.members) this.#members.set(m, { up: true, calls: new Set(), streams: new Set() });
    this.#probe = options.probe;
    this.#intervalMs = options.intervalMs ?? 500;
    this.#probeTimeoutMs = options.probeTimeoutMs ?? 1000;
    this.#onChange = options.onChange ?? (() => {});
    // A probe that fails is its member's outcome (#probeOne), so a round has nothing to report.
    this.#rounds = new Rounds(
      () => this.#round(),
      () => {},
    );
  }

  /** Probes every member every intervalMs until stop(). */
  start(): void {
    this.#rounds.start(this.#intervalMs);
  }

  stop(): void {
    void this.#rounds.stop();
  }

  /**
   * One round: probes every member at once and waits for all (a round asked
   * for while one runs joins it). Members change state only when at
   * least one answered: when none does, the fault is more likely this side
   * (a stalled process, no network at all) and nothing is gained by refusing.
   */
  probeAll(): Promise<void> {
    return this.#rounds.run();
  }

  async #round(): Promise<void> {
    const outcomes = await Promise.all([...this.#members.keys()].map((name) => this.#probeOne(name)));
    if (!outcomes.some((o) => o.up)) return;
    for (const o of outcomes) this.#set(o.name, o.up, o.why);
  }

  async #probeOne(name: string): Promise<{ name: string; up: boolean; why: string }> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`no answer within ${this.#probeTimeoutMs} ms`)),
        this.#probeTimeoutMs,
      );
    });
    try {
      await Promise.race([this.#probe(name, this.#probeTimeoutMs), late]);
      return { name, up: true, why: "answers again" };
    } catch (err) {
      return { name, up: false, why: (err as Error).message };
    } finally {
      clearTimeout(timer);
    }
  }

  /** Whether calls keep off `member` now: it is down and some other member is up. */
  refuses(member: string): boolean {
    const m = this.#members.get(member);
    if (!m || m.up) return false;
    return [...this.#members.values()].some((o) => o.up);
  }

  /** The members up now. */
  get up(): string[] {
    return [...this.#members].filter(([, m]) => m.up).map(([name]) => name);
  }

  /** The etcd3 client's policy for `member` (`faultHandling.host`). */
  policy(member: string): HostPolicy {
    const execute = async <T>(fn: (context: { signal: AbortSignal }) => PromiseLike<T> | T): Promise<T> => {
      const m = this.#members.get(member);
      if (m && this.refuses(member)) {
        // Not sent: the pool moves on to the next member.
        throw new GRPCUnavailableError(`etcd member ${member} is down (it did not answer its last probe)`);
      }
      const result = fn({ signal: new AbortController().signal });
      const write = sentWrite();
      if (write && isThenable(result)) {
        // Sent: if this attempt fails, it may still have been committed.
        result.then(undefined, () => {
          write.inDoubt = true;
        });
      }
      if (!m) return result;
      if (isThenable(result) && !write) {
        let fail: (err: Error) => void = () => {};
        const dropped = new Promise<never>((_, reject) => {
          fail = reject;
        });
        m.calls.add(fail);
        try {
          return await Promise.race([result, dropped]);
        } finally {
          m.calls.delete(fail);
        }
      }
      if (isStream(result)) {
        m.streams.add(result);
        const forget = () => m.streams.delete(result);
        result.once("close", forget);
        result.once("error", forget);
      }
      return result;
    };
    return hostPolicy(execute);
  }

  #set(name: string, up: boolean, why: string): void {
    const member = this.#members.get(name);
    if (!member || member.up === up) return;
    member.up = up;
    this.#onChange(name, up, why);
    if (up) return;
    const err = new GRPCUnavailableError(`etcd member ${name} stopped answering: ${why}`);
    for (const fail of member.calls) fail(err);
    member.calls.clear();
    const streams = [...member.streams];
    member.streams.clear();
    for (const stream of streams) stream.cancel();
  }
}

type Execute = <T>(fn: (context: { signal: AbortSignal }) => PromiseLike<T> | T) => Promise<T>;

/** A policy that runs `execute`; its success and failure hooks do nothing (the client uses only execute). */
function hostPolicy(execute: Execute): HostPolicy {
  const none = () => ({ dispose: () => {} });
  return { execute, onSuccess: none, onFailure: none } as unknown as HostPolicy;
}

/** A policy that runs the call once: for clients that neither retry nor break circuits (the probes'). */
export const passThrough: HostPolicy = hostPolicy(async (fn) => fn({ signal: new AbortController().signal }));

function isThenable<T>(value: unknown): value is PromiseLike<T> {
  return typeof (value as PromiseLike<T> | undefined)?.then === "function";
}

type Stream = { cancel(): void; once(event: string, listener: () => void): unknown };

function isStream(value: unknown): value is Stream {
  const v = value as Partial<Stream> | undefined;
  return typeof v?.cancel === "function" && typeof v.once === "function";
}
