// Plan-run is the child process of `datasync plan`: it runs one Pulumi program under
// `pulumi.runtime.setMocks` (no engine, no provider, no cloud call) with the config the parent put in
// PULUMI_CONFIG, records every resource the program registers, and writes the records (credentials
// removed, see plan-model `recordOf`) as JSON to DATASYNC_PLAN_OUT. A child because the program is
// imported fresh for each evaluation (head and base) and the runtime's mock state is process-global.
import { writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import { recordOf, type RecordedResource } from "./plan-model.js";

type PulumiModule = typeof import("@pulumi/pulumi");

const program = process.env.DATASYNC_PLAN_PROGRAM!;
const out = process.env.DATASYNC_PLAN_OUT!;
const resources: RecordedResource[] = [];
let written = false;

function finish(result: { resources?: RecordedResource[]; error?: string }): void {
  if (written) return;
  written = true;
  writeFileSync(out, JSON.stringify(result));
}

function fail(err: unknown): never {
  const e = err as Error;
  // a ProgramConfigError's message already lists each key and its fix; keep stacks out of the review
  finish({ error: e && typeof e.message === "string" ? e.message : String(err) });
  process.exit(2);
}

process.on("uncaughtException", fail);
process.on("unhandledRejection", fail);

/** The program's own copy of @pulumi/pulumi: mocks set on another copy would not reach its resources. */
async function pulumiFor(file: string): Promise<PulumiModule> {
  let entry: string;
  try {
    entry = createRequire(file).resolve("@pulumi/pulumi");
  } catch {
    // a program outside any node_modules tree (e.g. importing the datasync package by path) uses ours
    entry = createRequire(import.meta.url).resolve("@pulumi/pulumi");
  }
  const m: any = await import(pathToFileURL(entry).href);
  skipProviderSerialization(entry);
  return (m.default && m.default.runtime ? m.default : m) as PulumiModule;
}

/**
 * A dynamic resource serializes its provider's closure (its `__provider` input) as it is constructed,
 * the slowest part of running a program under mocks. The plan never runs a provider, so that text is
 * not needed: the module's export is replaced by a stub. If the SDK's layout changes, the stub is
 * simply not installed and the plan runs slower, never differently.
 */
function skipProviderSerialization(entry: string): void {
  try {
    const closure = createRequire(entry)("./runtime/closure/serializeClosure.js");
    if (typeof closure.serializeFunction === "function") closure.serializeFunction = async () => ({ text: "(not serialized by datasync plan)", containsSecrets: false });
  } catch {}
}

async function main(): Promise<void> {
  const pulumi = await pulumiFor(program);
  await pulumi.runtime.setMocks(
    {
      newResource: (args) => {
        resources.push(recordOf(args.type, args.name, args.inputs));
        // outputs = inputs; what a provider would compute (an Azure host name) stays unknown, as in a preview
        return { id: `${args.name}-id`, state: args.inputs };
      },
      call: (args) => args.inputs,
    },
    process.env.DATASYNC_PLAN_PROJECT!,
    process.env.DATASYNC_PLAN_STACK!,
    true,
  );
  await pulumi.runtime.runInPulumiStack(async () => {
    // what the Node.js language host does: import the program; an exported function is the program
    const mod: any = await import(pathToFileURL(program).href);
    const entry = mod.default ?? mod;
    return typeof entry === "function" ? await entry() : undefined;
  });
  await pulumi.runtime.disconnect(); // waits until every registration the outputs need has been recorded
  finish({ resources });
}

main().then(() => process.exit(0), fail);
