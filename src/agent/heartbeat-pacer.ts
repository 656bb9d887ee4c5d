/**
 * When the agent's next heartbeat goes: after its interval, or at once when
 * something changed. A burst of status changes is one heartbeat (debounced);
 * `now()` (stopping, a change the control plane announced) skips the debounce.
 */
export class HeartbeatPacer {
  readonly #debounceMs: number;
  #requested = false;
  #wake: (() => void) | undefined;
  #debounce: NodeJS.Timeout | undefined;

  constructor(debounceMs: number) {
    this.#debounceMs = debounceMs;
  }

  /** A status changed: a heartbeat goes soon (one for the changes within debounceMs). */
  changed(): void {
    if (this.#debounce) return;
    this.#debounce = setTimeout(() => {
      this.#debounce = undefined;
      this.now();
    }, this.#debounceMs);
  }

  /** A heartbeat goes at once (the pause under way ends). */
  now(): void {
    this.#requested = true;
    this.#wake?.();
  }

  /** Waits `ms`, or less when a heartbeat was asked for meanwhile (not at all when one already was, or `wait` is false). */
  async pause(ms: number, wait: boolean): Promise<void> {
    if (!this.#requested && wait) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, ms);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    this.#wake = undefined;
    this.#requested = false;
  }

  /** Drops a debounced heartbeat not sent yet. */
  close(): void {
    clearTimeout(this.#debounce);
    this.#debounce = undefined;
  }
}
