/** Whether something is at `path` (a file, a directory, anything `access` sees). */

import { access } from "node:fs/promises";

export async function pathExists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
