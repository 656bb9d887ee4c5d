/**
 * One registry of errors with stable codes and HTTP statuses. Every error that
 * crosses a boundary (API reply, CLI message) is a HerdError.
 */

export const ERRORS = {
  invalid: 400, // bad input; details name the field
  unauthorized: 401,
  revoked: 401, // the credential was revoked: retrying with it changes nothing (a removed node's agent stops)
  forbidden: 403,
  not_found: 404,
  conflict: 409, // stale revision, name taken
  gone: 410, // watch revision compacted: relist
  too_large: 413,
  too_many: 429, // slow down: Retry-After says when
  unavailable: 503,
  internal: 500,
} as const;

export type ErrorCode = keyof typeof ERRORS;

/** One problem with one field of an input. */
export interface FieldProblem {
  /** Dotted path of the field, e.g. `services.web.instances`. */
  field: string;
  message: string;
  /** Line in the source file, when the input was a file. */
  line?: number;
}

export class HerdError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: FieldProblem[] | undefined;

  constructor(code: ErrorCode, message: string, details?: FieldProblem[]) {
    super(message);
    this.name = "HerdError";
    this.code = code;
    this.status = ERRORS[code];
    this.details = details;
  }

  toJSON(): { code: ErrorCode; message: string; details?: FieldProblem[] } {
    return this.details
      ? { code: this.code, message: this.message, details: this.details }
      : { code: this.code, message: this.message };
  }
}

export const invalid = (message: string, details?: FieldProblem[]): HerdError =>
  new HerdError("invalid", message, details);
export const notFound = (message: string): HerdError => new HerdError("not_found", message);
export const conflict = (message: string): HerdError => new HerdError("conflict", message);

/** Whether `err` is a HerdError with the given code. */
export const isCode = (err: unknown, code: ErrorCode): boolean =>
  err instanceof HerdError && err.code === code;
