/**
 * Work done in rounds every interval, one round at a time (the autoscaler, the
 * remediation engine, the machine controller, the alert evaluator): a round
 * asked for while one runs joins it, a failed round is handed to `onError` and
 * the next one runs as usual, and stop waits for the round in flight.
 */
export class Rounds {
  readonly #round: () => Promise<void>;
  readonly #onError: (err: unknown) => void;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;

  constructor(round: () => Promise<void>, onError: (err: unknown) => void) {
    this.#round = round;
    this.#onError = onError;
  }

  /** A round every `intervalMs`; the timer does not keep the process alive. */
  start(intervalMs: number): void {
    this.#timer = setInterval(() => void this.run(), intervalMs);
    this.#timer.unref();
  }

  /** A round now, or the one running; never rejects. */
  run(): Promise<void> {
    this.#running ??= this.#round()
      .catch(this.#onError)
      .finally(() => {
        this.#running = undefined;
      });
    return this.#running;
  }

  /** No more rounds; resolves once a round in flight has ended. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#running;
  }
}
