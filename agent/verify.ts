import type { Config } from "./config.js";
export async function verifyCommand(_c: Config, _o: any): Promise<number> { throw new Error("verify: not built yet"); }
export async function repairCommand(_c: Config, _o: any): Promise<number> { throw new Error("repair: not built yet"); }
