/**
 * One reporter's reports of one service, compact: a ring of slots in typed
 * arrays (one slot per report: when it arrived, its interval, the service's
 * counts and histogram) and, aligned with it, one ring per instance. About
 * 80 bytes a slot for the service and 60 per instance, instead of the ~1 KB
 * of the parsed JSON. The ring grows by doubling up to `MAX_SLOTS`, past
 * which the oldest slot is overwritten. Used by live-load.ts.
 */

import { LATENCY_BUCKETS_MS, type ServiceLoad } from "../model/load.ts";

const BUCKETS = LATENCY_BUCKETS_MS.length + 1;

/** Service slot fields: counts, then the histogram. */
export const S_REQUESTS = 0;
export const S_ERRORS = 1;
export const S_SHED = 2;
export const S_INFLIGHT = 3;
export const S_WAITING = 4;
export const S_LATENCY = 5;
export const S_FIELDS = S_LATENCY + BUCKETS;
/** Instance slot fields. */
export const I_REQUESTS = 0;
export const I_ERRORS = 1;
export const I_INFLIGHT = 2;
export const I_LATENCY = 3;
export const I_FIELDS = I_LATENCY + BUCKETS;

/** One instance's ring, aligned with its Track's slots (zeros where a report did not name it). */
export interface InstanceTrack {
  /** The release of the latest report that named it. */
  release: number;
  /** When the latest report that named it arrived. */
  lastAt: number;
  data: Uint32Array;
}

export class Track {
  readonly maxSlots: number;
  cap = 8;
  /** Physical index of the oldest slot, and how many slots are in use. */
  head = 0;
  size = 0;
  at = new Float64Array(8);
  interval = new Float64Array(8);
  data = new Uint32Array(8 * S_FIELDS);
  readonly instances = new Map<string, InstanceTrack>();

  constructor(maxSlots: number) {
    this.maxSlots = maxSlots;
  }

  /** The physical index of the `i`th slot, oldest first. */
  slot(i: number): number {
    return (this.head + i) % this.cap;
  }

  /** The physical index of the newest slot (size > 0). */
  newest(): number {
    return this.slot(this.size - 1);
  }

  /** Adds a report's figures for this service, arrived at `at`. */
  push(at: number, intervalMs: number, load: ServiceLoad): void {
    if (this.size === this.cap) {
      if (this.cap < this.maxSlots) this.#grow(Math.min(this.maxSlots, this.cap * 2));
      else {
        this.head = (this.head + 1) % this.cap;
        this.size--;
      }
    }
    const p = (this.head + this.size) % this.cap;
    this.size++;
    this.at[p] = at;
    this.interval[p] = intervalMs;
    const d = this.data;
    const o = p * S_FIELDS;
    d[o + S_REQUESTS] = load.requests;
    d[o + S_ERRORS] = load.errors;
    d[o + S_SHED] = load.shed;
    d[o + S_INFLIGHT] = load.inflight;
    d[o + S_WAITING] = load.waiting;
    for (let b = 0; b < BUCKETS; b++) d[o + S_LATENCY + b] = load.latency[b];
    const io = p * I_FIELDS;
    for (const t of this.instances.values()) t.data.fill(0, io, io + I_FIELDS);
    for (const inst of load.instances) {
      let t = this.instances.get(inst.instance);
      if (t === undefined) {
        t = { release: inst.release, lastAt: at, data: new Uint32Array(this.cap * I_FIELDS) };
        this.instances.set(inst.instance, t);
      }
      t.release = inst.release;
      t.lastAt = at;
      // Added, not set: a report naming an instance twice counts both.
      const td = t.data;
      td[io + I_REQUESTS] += inst.requests;
      td[io + I_ERRORS] += inst.errors;
      td[io + I_INFLIGHT] += inst.inflight;
      for (let b = 0; b < BUCKETS; b++) td[io + I_LATENCY + b] += inst.latency[b];
    }
  }

  /** Drops slots that arrived before `t`, and instances not named since. */
  dropBefore(t: number): void {
    while (this.size > 0 && this.at[this.head] < t) {
      this.head = (this.head + 1) % this.cap;
      this.size--;
    }
    for (const [id, inst] of this.instances) if (inst.lastAt < t) this.instances.delete(id);
  }

  /** Bytes held by the typed arrays (what the memory grows with). */
  bytes(): number {
    let n = this.at.byteLength + this.interval.byteLength + this.data.byteLength;
    for (const t of this.instances.values()) n += t.data.byteLength;
    return n;
  }

  /** Copies the slots, oldest first, into rings of `cap` slots. */
  #grow(cap: number): void {
    const at = new Float64Array(cap);
    const interval = new Float64Array(cap);
    const data = new Uint32Array(cap * S_FIELDS);
    const moved = new Map<InstanceTrack, Uint32Array>();
    for (const t of this.instances.values()) moved.set(t, new Uint32Array(cap * I_FIELDS));
    for (let i = 0; i < this.size; i++) {
      const p = this.slot(i);
      at[i] = this.at[p];
      interval[i] = this.interval[p];
      data.set(this.data.subarray(p * S_FIELDS, (p + 1) * S_FIELDS), i * S_FIELDS);
      for (const [t, next] of moved)
        next.set(t.data.subarray(p * I_FIELDS, (p + 1) * I_FIELDS), i * I_FIELDS);
    }
    for (const [t, next] of moved) t.data = next;
    this.at = at;
    this.interval = interval;
    this.data = data;
    this.cap = cap;
    this.head = 0;
  }
}
