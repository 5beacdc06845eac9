// Entry of `npm run chaos`: loads the TypeScript runner through Vite's module runner (no extra dependency;
// the agent itself runs compiled from dist/, built by the npm script first).
import { resolve } from "node:path";
import { runnerImport } from "vite";

const here = import.meta.dirname;
const { module } = await runnerImport(resolve(here, "main.ts"), { configFile: false, logLevel: "error", root: resolve(here, "../..") });
let code = 1;
try {
  code = await module.main(process.argv.slice(2));
} catch (e) {
  console.error(`chaos: ${e?.stack ?? e}`);
  code = 2;
}
process.exit(code);
