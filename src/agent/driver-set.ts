/**
 * DriverSet: the agent's drivers behind one RuntimeDriver. The first is the
 * default (process); a StartSpec with `runtime` goes to the driver of that
 * name, and every later call for an id goes to the driver that holds it.
 * Isolation and CPU sharing are the default driver's; the network policy goes to every driver.
 */

import { HerdError } from "../common/errors.ts";
import type {
  DriverUsage,
  InstanceProcess,
  Isolation,
  NetworkPolicy,
  RuntimeDriver,
  StartSpec,
} from "./driver.ts";

export class DriverSet implements RuntimeDriver {
  readonly name: string;
  readonly #default: RuntimeDriver;
  readonly #others = new Map<string, RuntimeDriver>();
  /** Instance id → the driver that started or recovered it. */
  readonly #owner = new Map<string, RuntimeDriver>();
  readonly #listeners: ((p: InstanceProcess) => void)[] = [];
  #policy: NetworkPolicy | undefined;

  constructor(defaultDriver: RuntimeDriver) {
    this.#default = defaultDriver;
    this.name = defaultDriver.name;
    defaultDriver.onExit((p) => this.#emit(p));
  }

  /** Adds a driver that StartSpecs ask for by name (before recover()). */
  add(driver: RuntimeDriver): void {
    this.#others.set(driver.name, driver);
    driver.onExit((p) => this.#emit(p));
    if (this.#policy) driver.setNetworkPolicy?.(this.#policy);
  }

  /** The names of the drivers besides the default, for heartbeats. */
  extraNames(): string[] {
    return [...this.#others.keys()];
  }

  isolation(): Isolation {
    return this.#default.isolation();
  }

  /** What isolation each driver besides the default gives, for heartbeats. */
  extraIsolation(): Record<string, Isolation> {
    return Object.fromEntries([...this.#others].map(([name, d]) => [name, d.isolation()]));
  }

  async start(spec: StartSpec): Promise<InstanceProcess> {
    const driver = spec.runtime ? this.#others.get(spec.runtime) : this.#default;
    if (!driver) throw new HerdError("unavailable", `this node has no ${spec.runtime} runtime driver`);
    // A new generation may move it to another driver: the old one forgets it first.
    const previous = this.#owner.get(spec.id);
    if (previous && previous !== driver) await previous.remove(spec.id);
    const p = await driver.start(spec);
    this.#owner.set(spec.id, driver);
    return p;
  }

  async stop(id: string, graceMs: number): Promise<void> {
    await this.#owner.get(id)?.stop(id, graceMs);
  }

  async inspect(id: string): Promise<InstanceProcess | undefined> {
    return this.#owner.get(id)?.inspect(id);
  }

  async list(): Promise<InstanceProcess[]> {
    return (await Promise.all(this.#all().map((d) => d.list()))).flat();
  }

  async recover(): Promise<InstanceProcess[]> {
    const found: InstanceProcess[] = [];
    for (const driver of this.#all()) {
      for (const p of await driver.recover()) {
        this.#owner.set(p.id, driver);
        found.push(p);
      }
    }
    return found;
  }

  onExit(listener: (p: InstanceProcess) => void): void {
    this.#listeners.push(listener);
  }

  async tail(id: string, lines: number): Promise<string[]> {
    const driver = this.#owner.get(id);
    if (!driver) throw new HerdError("not_found", `instance ${id} is not known to any driver`);
    return driver.tail(id, lines);
  }

  started(id: string, cpuLimitCores: number | undefined): void {
    this.#owner.get(id)?.started?.(id, cpuLimitCores);
  }

  async remove(id: string): Promise<void> {
    const driver = this.#owner.get(id);
    if (!driver) return;
    await driver.remove(id);
    this.#owner.delete(id);
  }

  async usage(id: string): Promise<DriverUsage | undefined> {
    return this.#owner.get(id)?.usage(id);
  }

  close(): void {
    for (const d of this.#all()) d.close?.();
  }

  setNetworkPolicy(policy: NetworkPolicy): void {
    this.#policy = policy;
    for (const driver of [this.#default, ...this.#others.values()]) driver.setNetworkPolicy?.(policy);
  }

  shareCpu(cores: number): void {
    this.#default.shareCpu?.(cores);
  }

  #all(): RuntimeDriver[] {
    return [this.#default, ...this.#others.values()];
  }

  #emit(p: InstanceProcess): void {
    for (const listener of this.#listeners) listener(p);
  }
}
