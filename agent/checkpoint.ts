import type { Config } from "./config.js";
export async function resnapshotCommand(_c: Config, _o: any): Promise<number> { throw new Error("resnapshot: not built yet"); }
