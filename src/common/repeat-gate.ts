/**
 * Says whether a failure is worth reporting again: a new one (another key or
 * another message) at once, the same one only after `everyMs`. For loops that
 * retry every few seconds and would otherwise write the same event each pass.
 */
export class RepeatGate {
  readonly #everyMs: number;
  readonly #last = new Map<string, { message: string; at: number }>();

  constructor(everyMs: number) {
    this.#everyMs = everyMs;
  }

  /** Whether to report `message` for `key` now; if so, it counts as reported. */
  pass(key: string, message: string, now = Date.now()): boolean {
    const last = this.#last.get(key);
    if (last && last.message === message && now - last.at < this.#everyMs) return false;
    this.#last.set(key, { message, at: now });
    return true;
  }

  /** The failure of `key` is over: its next one is reported at once. */
  clear(key: string): void {
    this.#last.delete(key);
  }
}
