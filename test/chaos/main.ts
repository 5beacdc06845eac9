// `npm run chaos -- [--runs N] [--seed S] [--replay RUNSEED] [--faults a,b] [--bail]`: a session of seeded
// chaos runs (see chaos.ts). Prints every run's seed and fault schedule, the replay command of any failing
// run with the tail of its agent logs, and one result line. Exit 0 when every run ended identical.
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { ChaosEnv, FAULTS, agentTail, chaosRun, describeStep, planRun, runSeeds, sharedStreamOverride, type FaultKind, type RunResult } from "./chaos.js";

export interface SessionArgs {
  runs: number;
  seed: number;
  replay: number | null;
  faults: FaultKind[];
  bail: boolean;
  snapshotLoad: boolean;
}

export function parseArgs(argv: string[]): SessionArgs {
  const a: SessionArgs = { runs: 20, seed: Math.floor(Math.random() * 0x7fffffff) + 1, replay: null, faults: [...FAULTS], bail: false, snapshotLoad: true };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = () => {
      const x = argv[++i];
      if (x === undefined) throw new Error(`${k} needs a value`);
      return x;
    };
    if (k === "--runs") a.runs = Number(v());
    else if (k === "--seed") a.seed = Number(v());
    else if (k === "--replay") a.replay = Number(v());
    else if (k === "--bail") a.bail = true;
    else if (k === "--snapshot-load") a.snapshotLoad = true;
    else if (k === "--no-snapshot-load") a.snapshotLoad = false;
    else if (k === "--faults") {
      const fs = v().split(",").map((s) => s.trim()) as FaultKind[];
      const bad = fs.filter((f) => f !== "none" && !(FAULTS as readonly string[]).includes(f));
      if (bad.length) throw new Error(`unknown fault(s) ${bad.join(", ")}; known: ${FAULTS.join(", ")}`);
      a.faults = fs;
    } else throw new Error(`unknown argument ${k}; usage: npm run chaos -- [--runs N] [--seed S] [--replay RUNSEED] [--faults ${FAULTS.join(",")}] [--bail] [--no-snapshot-load]`);
  }
  if (!Number.isInteger(a.runs) || a.runs < 1) throw new Error("--runs must be a positive integer");
  if (!Number.isInteger(a.seed) || (a.replay !== null && !Number.isInteger(a.replay))) throw new Error("seeds are integers");
  return a;
}

export async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv);
  const faultsArg = (args.faults.length === FAULTS.length ? "" : ` --faults ${args.faults.join(",")}`) + (args.snapshotLoad ? "" : " --no-snapshot-load");
  const seeds = args.replay !== null ? [args.replay] : runSeeds(args.seed, args.runs);
  const t0 = Date.now();
  console.log(args.replay !== null ? `chaos: replaying run seed ${args.replay}` : `chaos: ${args.runs} runs, session seed ${args.seed} (replay the session: npm run chaos -- --runs ${args.runs} --seed ${args.seed}${faultsArg})`);
  const hub = sharedStreamOverride().sharedStream;
  if (hub !== undefined) console.log(`chaos: apply.sharedStream ${hub} (DATASYNC_CHAOS_SHARED_STREAM)`);
  if (sharedStreamOverride().readerThread !== undefined) console.log(`chaos: apply.readerThread ${sharedStreamOverride().readerThread} (DATASYNC_CHAOS_READER_THREAD)`);
  const env = await ChaosEnv.start();
  const results: RunResult[] = [];
  try {
    for (let i = 0; i < seeds.length; i++) {
      const plan = planRun(seeds[i], args.faults);
      console.log(`run ${i + 1}/${seeds.length} seed ${plan.seed}: warm-up ${plan.warmup} ms${plan.ddl ? ", DDL in the load" : ""}; ${plan.faults.map(describeStep).join("; ")}`);
      const r = await chaosRun(env, plan, { log: (l) => console.log(l), loadDuringSnapshot: args.snapshotLoad });
      results.push(r);
      if (r.ok) {
        console.log(`run ${i + 1}/${seeds.length} seed ${plan.seed}: identical (${(r.ms / 1000).toFixed(1)} s, ${r.committed} transactions${r.stallsDetected ? `, ${r.stallsDetected} stall(s) detected` : ""}${r.stopHung ? "; WARNING: the agent hung on SIGTERM" : ""})`);
      } else {
        console.log(`run ${i + 1}/${seeds.length} seed ${plan.seed}: FAILED after ${(r.ms / 1000).toFixed(1)} s`);
        console.log(`  ${r.failure?.replace(/\n/g, "\n  ")}`);
        console.log(`  replay: npm run chaos -- --replay ${plan.seed}${faultsArg}`);
        console.log(`  logs: ${r.logDir}`);
        for (const f of readdirSync(r.logDir!).filter((x) => x.startsWith("agent-"))) {
          const logs = readFileSync(join(r.logDir!, f), "utf8")
            .split("\n")
            .map((l) => {
              try {
                return JSON.parse(l);
              } catch {
                return { raw: l };
              }
            });
          console.log(`  ${f} (warnings, errors, stream events; last 25):`);
          for (const l of agentTail(logs, 25)) console.log(`    ${l}`);
        }
        if (args.bail) break;
      }
    }
  } finally {
    await env.destroy();
  }
  const failed = results.filter((r) => !r.ok);
  const secs = ((Date.now() - t0) / 1000).toFixed(0);
  const hung = results.filter((r) => r.stopHung);
  if (hung.length) console.log(`chaos: WARNING: in ${hung.length} run(s) the agent did not exit after SIGTERM (seeds ${hung.map((r) => r.seed).join(", ")})`);
  if (failed.length === 0 && results.length === seeds.length) {
    console.log(`chaos: ${results.length}/${seeds.length} runs ended identical in ${secs} s (session seed ${args.seed}${args.replay !== null ? `, replay ${args.replay}` : ""})`);
    return 0;
  }
  console.log(`chaos: ${results.length - failed.length}/${seeds.length} runs ended identical in ${secs} s; failed seeds: ${failed.map((r) => r.seed).join(", ")} (replay each: npm run chaos -- --replay SEED${faultsArg})`);
  return 1;
}
