// Cli owns the `datasync` command line (DESIGN.md contract): parsing, exit codes, human/JSON output.
// Each command loads its module lazily so `datasync check` does not pay for the streamer.
import { fileURLToPath } from "node:url";
import { Command, Option } from "commander";
import { loadConfig, type Config } from "./config.js";
import { ConfigError } from "./errors.js";

const program = new Command();
program.name("datasync").description("MySQL Data Sync as code: keep up to five replicas in sync with one primary").showHelpAfterError();

function config(opts: { config?: string }): Config {
  return loadConfig(opts.config);
}

/** Run a command body; config errors and unexpected failures exit non-zero with a clear message. */
function run(fn: (...args: any[]) => Promise<number | void>, failCode = 2) {
  return async (...args: any[]) => {
    try {
      const code = await fn(...args);
      process.exitCode = code ?? 0;
    } catch (err: any) {
      if (err instanceof ConfigError) {
        process.stderr.write(`datasync: ${err.message}\n`);
      } else {
        process.stderr.write(`datasync: ${err?.message ?? String(err)}\n`);
        if (process.env.DATASYNC_DEBUG) process.stderr.write(`${err?.stack}\n`);
      }
      process.exitCode = failCode;
    }
  };
}

/** What cli.ts uses of dev/sandbox.ts (typed here: the agent does not import dev/ statically, see below). */
interface SandboxModule {
  sandbox(opts: Record<string, unknown>): Promise<number>;
}

/**
 * The sandbox is development tooling (dev/), shipped with the repository but not in the agent image. It is
 * loaded by a specifier held in a variable: tsc then neither resolves nor needs dev/ (the image compiles
 * agent/ alone), and eslint's no-restricted-imports (static imports of dev/ from agent/) does not apply.
 */
async function loadSandbox(): Promise<SandboxModule> {
  const spec = "../dev/sandbox.js";
  try {
    return (await import(spec)) as SandboxModule;
  } catch (err: any) {
    const path = fileURLToPath(new URL(spec, import.meta.url));
    if (err?.code === "ERR_MODULE_NOT_FOUND" && String(err.message).includes(path)) {
      throw new Error("the sandbox is a development tool; run it from a checkout of the repository: npm start", { cause: err });
    }
    throw err;
  }
}

const configOpt = () => new Option("-c, --config <file>", "agent config file (JSON or YAML); default: env DATASYNC_CONFIG");

program
  .command("agent")
  .description("run the sync agent in the foreground (JSON logs on stdout; SIGTERM/SIGINT stop cleanly)")
  .addOption(configOpt())
  .action(
    run(async (opts) => {
      const { runAgent } = await import("./main.js");
      const code = await runAgent(config(opts));
      // checkpoints are saved and logs flushed: a driver timer left behind must not keep the process alive
      process.exit(code);
    }, 1),
  );

program
  .command("check")
  .description("preflight: every rule, live against the source and each replica")
  .addOption(configOpt())
  .option("--json", "print the report as JSON")
  .action(
    run(async (opts) => {
      const { preflight } = await import("./preflight.js");
      const { formatReport } = await import("./report.js");
      const report = await preflight(config(opts));
      process.stdout.write(opts.json ? JSON.stringify(report, null, 2) + "\n" : formatReport(report));
      return report.ok ? 0 : 1;
    }),
  );

program
  .command("status")
  .description("per replica: checkpoint position, lag, snapshot progress")
  .addOption(configOpt())
  .option("--json", "print as JSON")
  .action(
    run(async (opts) => {
      const { status, formatStatus } = await import("./ops/status.js");
      const st = await status(config(opts));
      process.stdout.write(opts.json ? JSON.stringify(st, null, 2) + "\n" : formatStatus(st));
      return 0;
    }),
  );

program
  .command("verify")
  .description("chunked checksum comparison of source and replicas; exit 0 identical, 1 different, 2 could not run")
  .addOption(configOpt())
  .option("--replica <name>", "only this replica")
  .option("--tables <list>", "only these tables (db.t,…)")
  .option("--json", "print the result as JSON")
  .action(
    run(async (opts) => {
      const { verifyCommand } = await import("./verify/commands.js");
      return verifyCommand(config(opts), opts);
    }),
  );

program
  .command("repair")
  .description("make replicas equal to the source for the differing chunks")
  .addOption(configOpt())
  .option("--replica <name>", "only this replica")
  .option("--tables <list>", "only these tables (db.t,…)")
  .option("--dry-run", "print the SQL instead of running it")
  .action(
    run(async (opts) => {
      const { repairCommand } = await import("./verify/commands.js");
      return repairCommand(config(opts), opts);
    }),
  );

program
  .command("resnapshot")
  .description("mark a replica (or some tables) for a fresh online snapshot")
  .addOption(configOpt())
  .requiredOption("--replica <name>", "the replica")
  .option("--tables <list>", "only these tables (db.t,…)")
  .action(
    run(async (opts) => {
      const { resnapshotCommand } = await import("./ops/resnapshot.js");
      return resnapshotCommand(config(opts), opts);
    }),
  );

program
  .command("cutover")
  .description("migration cutover to replica NAME: checks, fence, drain, verify, promote, switch, way back; exit 0 done, 1 refused, 2 aborted (fence lifted), 3 switch failed")
  .addOption(configOpt())
  .requiredOption("--to <name>", "the replica that becomes the primary")
  .option("--max-freeze <s>", "longest write freeze in seconds (also the lag it accepts before the fence)", "5")
  .option("--switch-command <cmd>", "run through the shell after promote, with DATASYNC_NEW_PRIMARY_HOST/PORT/NAME and DATASYNC_OLD_PRIMARY_HOST/PORT")
  .option("--reverse-config <file>", "write the agent config of the way back (source NAME, replicas the old source and the others)")
  .option("--reverse-group <g>", "group name of the way back (default <group>-rev)")
  .option("--dry-run", "check every precondition and privilege; change nothing")
  .option("--json", "print the report as one JSON object")
  .action(
    run(async (opts) => {
      const { runCutover, formatCutover } = await import("./ops/cutover.js");
      const maxFreeze = Number(opts.maxFreeze);
      const r = await runCutover(config(opts), {
        to: opts.to,
        maxFreeze,
        switchCommand: opts.switchCommand,
        reverseConfig: opts.reverseConfig,
        reverseGroup: opts.reverseGroup,
        dryRun: !!opts.dryRun,
        progress: opts.json || !process.stderr.isTTY ? undefined : (l) => process.stderr.write(`… ${l}\n`),
      });
      process.stdout.write(opts.json ? JSON.stringify(r, null, 2) + "\n" : formatCutover(r));
      return r.exitCode;
    }, 1),
  );

program
  .command("sandbox")
  .description("the local sandbox: private servers, the agent, a workload, verification")
  .option("--replicas <n>", "number of replicas (1-5)", "2")
  .option("--duration <s>", "stop after S seconds (default: until Ctrl-C)")
  .option("--keep", "leave the servers running and print how to connect")
  .option("--cutover", "end with a cutover to replica1 under the workload and print the write freeze")
  .action(
    run(async (opts) => {
      const { sandbox } = await loadSandbox();
      return sandbox(opts);
    }, 1),
  );

program
  .command("plan")
  .description("offline topology review of a Pulumi stack (see `datasync plan --help`)")
  .allowUnknownOption(true)
  .action(() => {
    process.stderr.write("datasync: plan is run through bin/datasync.js (it loads the provider)\n");
    process.exitCode = 2;
  });

await program.parseAsync(process.argv);
