import type { Config } from "./config.js";
export async function status(_c: Config): Promise<unknown> { throw new Error("status: not built yet"); }
export function formatStatus(_s: unknown): string { return ""; }
