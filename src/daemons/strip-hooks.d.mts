/** The JavaScript of the TypeScript file `file` from the cache in `dir`, stripped and written there first when it is not. */
export function stripToCache(dir: string, file: string, source?: string): string;
