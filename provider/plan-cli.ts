// Plan-cli is the command line of `datasync plan --stack S [--base REF] [--format md|json]` (routed
// here by bin/datasync.js); the work is in plan.ts. Importing this module runs the command.
import { Command, InvalidArgumentError } from "commander";
import { runPlan, type PlanOptions } from "./plan.js";

function format(v: string): "md" | "json" {
  if (v === "md" || v === "markdown") return "md";
  if (v === "json") return "json";
  throw new InvalidArgumentError('use "md" or "json".');
}

export function planCommand(): Command {
  return new Command("plan")
    .name("datasync plan")
    .description("offline review of a stack's sync topology: runs the stack program under Pulumi mocks and checks the preview rules")
    .requiredOption("--stack <name>", "the stack (its Pulumi.<name>.yaml is read; secrets stay opaque)")
    .option("--base <ref>", "also evaluate the stack file at this git ref and show the differences")
    .option("--format <md|json>", "output format", format, "md")
    .option("--cwd <dir>", "the Pulumi project directory, with Pulumi.yaml (default: the current directory)")
    .option("--program <file>", "the compiled program to run instead of Pulumi.yaml main")
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
}

async function main(): Promise<void> {
  // bin/datasync.js routes `datasync plan …` here: argv[2] is "plan"
  const cmd = planCommand();
  let code = 0;
  try {
    cmd.parse(process.argv.slice(3), { from: "user" });
    const o = cmd.opts<PlanOptions>();
    o.cwd ??= process.cwd();
    code = runPlan(o, (s) => process.stdout.write(s), (s) => process.stderr.write(s + "\n"));
  } catch (e: any) {
    // commander already printed usage errors; --help is not an error
    code = e?.code === "commander.helpDisplayed" || e?.code === "commander.version" ? 0 : 2;
  }
  process.exitCode = code;
}

await main();
