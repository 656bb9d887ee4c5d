/**
 * Field problems found while reading an ingest body, gathered so one 400
 * names several bad fields at once (at most ten; the parse stops there).
 */

import { type FieldProblem, invalid } from "../../common/errors.ts";

/** Most problems listed in one 400 reply. */
const MAX_PROBLEMS = 10;

export class Problems {
  readonly list: FieldProblem[] = [];
  add(field: string, message: string): void {
    if (this.list.length < MAX_PROBLEMS) this.list.push({ field, message });
  }
  get full(): boolean {
    return this.list.length >= MAX_PROBLEMS;
  }
  /** Throws the 400 when anything was found. */
  check(what: string): void {
    if (this.list.length === 0) return;
    const first = this.list[0];
    const more =
      this.list.length > 1
        ? ` (and ${this.list.length - 1} more problem${this.list.length > 2 ? "s" : ""})`
        : "";
    throw invalid(`invalid ${what}: ${first.field}: ${first.message}${more}`, this.list);
  }
}
