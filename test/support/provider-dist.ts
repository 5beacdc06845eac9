// Loads the COMPILED provider (dist/) natively, outside vitest's module transform: a dynamic resource
// serializes its provider's closure when constructed (also under mocks), and the transform breaks that.
// Node ≥ 20.19 can require() an ES module. Run `npm run build` first (npm test does).
import { createRequire } from "node:module";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);

export function dist<T = any>(module: string): T {
  const file = fileURLToPath(new URL(`../../dist/provider/${module}.js`, import.meta.url));
  if (!existsSync(file)) throw new Error(`${file} is missing: run \`npm run build\` first`);
  return require(file) as T;
}

export type ProviderIndex = typeof import("../../provider/index.js");
export type ProgramModule = typeof import("../../provider/program.js");
