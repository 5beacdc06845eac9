import type { Config } from "./config.js";
export async function runAgent(_c: Config): Promise<number> { throw new Error("agent: not built yet"); }
