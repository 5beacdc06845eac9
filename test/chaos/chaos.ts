// Chaos runner: randomized fault runs against the real agent CLI. One source and two replicas (shared across
// runs; schemas reset between runs), a TCP proxy in front of each server (the agent connects only through
// them), a concurrent Writer on the source (direct), then a seeded random sequence of faults — agent SIGKILL,
// replica or source server SIGKILL, proxy latency, dropped connections, short stalls, and long half-open
// binlog stalls the agent must detect on its own — then catch-up, `datasync verify` (exit 0) and CHECKSUM
// TABLE of every table. Every run prints its seed; `--replay SEED` runs exactly that fault schedule again.
//
// Replays reproduce the fault schedule and the timing between faults; the Writer's own random choices and the
// interleaving of concurrent work are not seeded, so a timing-dependent bug may need a few replays.
import { spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AgentProcess, BIN, ROOT, checksums, tableList, waitCaughtUp, waitFor, writeConfig } from "../support/agent.js";
import { SCHEMA_SQL, Writer, prefill } from "../support/load.js";
import { TcpProxy } from "../support/proxy.js";
import { startServers, type TestServer } from "../support/servers.js";

// ---------------------------------------------------------------- seeded PRNG

/** mulberry32: small, fast, good enough for schedules; the same seed gives the same sequence */
export class Rng {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0;
  }
  next(): number {
    let t = (this.#s = (this.#s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.next() * xs.length)];
  }
  /** a 31-bit seed for a sub-run */
  seed(): number {
    return Math.floor(this.next() * 0x7fffffff) + 1;
  }
}

/** `apply.sharedStream` from env DATASYNC_CHAOS_SHARED_STREAM ("1" on, "0" off, unset: the agent's default) */
export function sharedStreamOverride(): { sharedStream?: boolean; readerThread?: boolean } {
  const v = process.env.DATASYNC_CHAOS_SHARED_STREAM;
  const rt = process.env.DATASYNC_CHAOS_READER_THREAD;
  const out: { sharedStream?: boolean; readerThread?: boolean } = {};
  if (v !== undefined && v !== "") {
    if (v !== "1" && v !== "0") throw new Error(`DATASYNC_CHAOS_SHARED_STREAM=${v}: use 1 (hub on) or 0 (hub off)`);
    out.sharedStream = v === "1";
  }
  // DATASYNC_CHAOS_READER_THREAD=1: apply.readerThread on (the shared stream read on a thread of its own)
  if (rt !== undefined && rt !== "") {
    if (rt !== "1" && rt !== "0") throw new Error(`DATASYNC_CHAOS_READER_THREAD=${rt}: use 1 (on) or 0 (off)`);
    out.readerThread = rt === "1";
    if (out.readerThread && out.sharedStream === false) throw new Error("DATASYNC_CHAOS_READER_THREAD=1 needs the shared stream (DATASYNC_CHAOS_SHARED_STREAM unset or 1)");
  }
  return out;
}

/** the seed of run i (0-based) of a session started with `seed` */
export function runSeeds(seed: number, runs: number): number[] {
  const r = new Rng(seed);
  return Array.from({ length: runs }, () => r.seed());
}

// ---------------------------------------------------------------- faults

export const FAULTS = ["agent-kill", "replica-kill", "source-kill", "latency", "drop", "stall-short", "stall-binlog"] as const;
/** "none" is a control: a pause with no fault (not in the default set) */
export type FaultKind = (typeof FAULTS)[number] | "none";

export interface FaultStep {
  kind: FaultKind;
  /** ms to wait before the fault */
  before: number;
  /** "source" | "r1" | "r2" */
  target: string;
  /** fault-specific: down time, latency, stall length (ms) */
  param: number;
  /** a second duration (latency spike length) */
  hold: number;
}

export interface RunPlan {
  seed: number;
  /** ms of load before the first fault (the snapshot may still be running) */
  warmup: number;
  ddl: boolean;
  faults: FaultStep[];
}

/** The whole schedule of a run from its seed (pure: printed, replayed). */
export function planRun(seed: number, allowed: readonly FaultKind[] = FAULTS, replicas = 2): RunPlan {
  const r = new Rng(seed);
  const names = ["source", ...Array.from({ length: replicas }, (_, i) => `r${i + 1}`)];
  const n = r.int(3, 5);
  const faults: FaultStep[] = [];
  for (let i = 0; i < n; i++) {
    const kind = r.pick(allowed);
    const step: FaultStep = { kind, before: r.int(300, 2500), target: "", param: 0, hold: 0 };
    switch (kind) {
      case "agent-kill":
        step.target = "agent";
        step.param = r.int(100, 1500);
        break;
      case "replica-kill":
        step.target = r.pick(names.slice(1));
        step.param = r.int(200, 3000);
        break;
      case "source-kill":
        step.target = "source";
        step.param = r.int(200, 3000);
        break;
      case "latency":
        step.target = r.pick(names);
        step.param = r.int(20, 400);
        step.hold = r.int(500, 4000);
        break;
      case "drop":
        step.target = r.pick(names);
        break;
      case "stall-short":
        step.target = r.pick(names);
        step.param = r.int(500, 4000);
        break;
      case "stall-binlog":
        step.target = "source";
        break;
      case "none":
        step.target = "-";
        break;
    }
    faults.push(step);
  }
  return { seed, warmup: r.int(300, 2500), ddl: r.next() < 0.5, faults };
}

export function describeStep(s: FaultStep): string {
  switch (s.kind) {
    case "agent-kill":
      return `agent SIGKILL, restart after ${s.param} ms`;
    case "replica-kill":
      return `${s.target} server SIGKILL, restart after ${s.param} ms`;
    case "source-kill":
      return `source server SIGKILL, restart after ${s.param} ms`;
    case "latency":
      return `proxy ${s.target}: +${s.param} ms latency for ${s.hold} ms`;
    case "drop":
      return `proxy ${s.target}: drop every connection`;
    case "stall-short":
      return `proxy ${s.target}: stall every connection for ${s.param} ms, then resume`;
    case "stall-binlog":
      return `proxy source: stall the binlog connections (half-open) until the agent detects it`;
    case "none":
      return "no fault (control)";
  }
}

// ---------------------------------------------------------------- environment

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface ChaosEnvOptions {
  replicas?: number;
  /** rows prefilled on the source before each run (the agent snapshots them) */
  prefillRows?: number;
}

/** Servers and proxies shared by the runs of a session. */
export class ChaosEnv {
  readonly src: TestServer;
  readonly reps: TestServer[];
  readonly proxies: Map<string, TcpProxy>;
  readonly prefillRows: number;

  private constructor(src: TestServer, reps: TestServer[], proxies: Map<string, TcpProxy>, prefillRows: number) {
    this.src = src;
    this.reps = reps;
    this.proxies = proxies;
    this.prefillRows = prefillRows;
  }

  static async start(opts: ChaosEnvOptions = {}): Promise<ChaosEnv> {
    const n = opts.replicas ?? 2;
    const [src, ...reps] = await startServers([{ name: "chaos-src" }, ...Array.from({ length: n }, (_, i) => ({ name: `chaos-r${i + 1}` }))]);
    const proxies = new Map<string, TcpProxy>();
    proxies.set("source", await TcpProxy.start(src.port, "source"));
    for (let i = 0; i < reps.length; i++) proxies.set(`r${i + 1}`, await TcpProxy.start(reps[i].port, `r${i + 1}`));
    return new ChaosEnv(src, reps, proxies, opts.prefillRows ?? Number(process.env.CHAOS_PREFILL ?? 300));
  }

  server(name: string): TestServer {
    return name === "source" ? this.src : this.reps[Number(name.slice(1)) - 1];
  }

  proxy(name: string): TcpProxy {
    return this.proxies.get(name)!;
  }

  /** agent config: every endpoint through its proxy */
  agentConfig(extra: Record<string, unknown> = {}): Record<string, unknown> {
    const ep = (name: string) => ({ host: "127.0.0.1", port: this.proxy(name).port, user: "root", password: "" });
    return {
      group: "chaos",
      source: ep("source"),
      replicas: this.reps.map((_, i) => ({ name: `r${i + 1}`, ...ep(`r${i + 1}`) })),
      databases: ["shop"],
      http: { listen: "127.0.0.1:0" },
      heartbeatSeconds: 0.5,
      // DATASYNC_CHAOS_SHARED_STREAM=1|0 forces apply.sharedStream (the decode-once hub) on or off; unset: the default
      apply: { maxRows: 500, stuckSeconds: 20, ...sharedStreamOverride() },
      ...extra,
    };
  }

  /** config for `datasync verify`: direct to the servers, no proxy */
  directConfig(): Record<string, unknown> {
    const ep = (s: TestServer) => ({ host: "127.0.0.1", port: s.port, user: "root", password: "" });
    return { ...this.agentConfig(), source: ep(this.src), replicas: this.reps.map((r, i) => ({ name: `r${i + 1}`, ...ep(r) })) };
  }

  /** every server up, every proxy clean, `shop` fresh on the source, nothing of the group on the replicas */
  async reset(): Promise<void> {
    for (const p of this.proxies.values()) {
      p.latency(0);
      p.resume();
      p.drop();
    }
    for (const s of [this.src, ...this.reps]) if (!s.running) await s.start();
    for (const r of this.reps) await r.query("DROP DATABASE IF EXISTS shop; DROP DATABASE IF EXISTS _datasync");
    await this.src.query("DROP DATABASE IF EXISTS shop");
    for (const s of SCHEMA_SQL.filter((q) => !q.includes("audit"))) await this.src.query(s);
    if (this.prefillRows > 0) await prefill(this.src, this.prefillRows);
  }

  async destroy(): Promise<void> {
    for (const p of this.proxies.values()) await p.close().catch(() => undefined);
    await Promise.all([this.src, ...this.reps].map((s) => s.destroy().catch(() => undefined)));
  }
}

// ---------------------------------------------------------------- one run

export interface RunResult {
  seed: number;
  ok: boolean;
  ms: number;
  /** what happened, with times relative to the start of the run */
  timeline: string[];
  /** why it failed */
  failure?: string;
  /** where the agent logs of a failed run were written */
  logDir?: string;
  committed: number;
  stallsDetected: number;
  /** set when the agent did not exit after SIGTERM (a bug, reported without failing the run) */
  stopHung?: string;
}

/** `datasync <args>` without blocking the event loop (the proxies live in this process) */
export function runCliAsync(args: string[], timeout = 120_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d) => (stdout += d));
    p.stderr.on("data", (d) => (stderr += d));
    const t = setTimeout(() => p.kill("SIGKILL"), timeout);
    p.on("exit", (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

class RunFailure extends Error {}

export interface RunOptions {
  /** printed as the run goes (default: nothing) */
  log?: (line: string) => void;
  /** how long to wait for the agent to notice a half-open binlog connection */
  stallDetectTimeoutMs?: number;
  catchUpTimeoutMs?: number;
  /** where failed runs leave their logs */
  outDir?: string;
  /** start the Writer while the replicas are still being seeded by the online snapshot (default true) */
  loadDuringSnapshot?: boolean;
}

export async function chaosRun(env: ChaosEnv, plan: RunPlan, opts: RunOptions = {}): Promise<RunResult> {
  const t0 = Date.now();
  const timeline: string[] = [];
  const note = (s: string) => {
    const line = `+${((Date.now() - t0) / 1000).toFixed(1)}s ${s}`;
    timeline.push(line);
    opts.log?.(`    ${line}`);
  };
  const agents: AgentProcess[] = [];
  let agent: AgentProcess | null = null;
  let writer: Writer | null = null;
  let stallsDetected = 0;
  // CHAOS_DIRECT=1: the agent connects to the servers without the proxies (to tell proxy effects apart)
  const cfgFile = writeConfig(process.env.CHAOS_DIRECT === "1" ? env.directConfig() : env.agentConfig());
  const startAgent = async () => {
    // DATASYNC_CHAOS_AGENT_NODE_OPTIONS: node options for the agent alone (--inspect=127.0.0.1:0 to take its stacks
    // when it hangs, --cpu-prof …); the chaos process keeps its own
    const nodeOptions = process.env.DATASYNC_CHAOS_AGENT_NODE_OPTIONS;
    agent = new AgentProcess(cfgFile, nodeOptions ? { NODE_OPTIONS: nodeOptions } : {});
    agents.push(agent);
    // it must pass its start-up (source preflight) and listen; replicas may still be coming up. A source
    // restarted just before (crash recovery) on a loaded machine can hold the preflight for more than 20 s.
    const t = Date.now();
    const a = agent;
    await a.waitForLog((x) => x.listen && /http listening/.test(x.msg), 60_000);
    if (Date.now() - t > 10_000) note(`the agent took ${((Date.now() - t) / 1000).toFixed(1)} s to start`);
  };
  const alive = () => {
    const a = agent!;
    if (a.proc.exitCode !== null || a.proc.signalCode !== null) throw new RunFailure(`the agent exited on its own (code ${a.proc.exitCode}, signal ${a.proc.signalCode}); stderr: ${a.stderr.slice(-2000)}`);
  };
  try {
    await env.reset();
    note(`reset: shop recreated on the source (${env.prefillRows} prefilled rows), replicas emptied`);
    await startAgent();
    note("agent started (through proxies)");
    if (opts.loadDuringSnapshot === false) {
      // the load starts once the online snapshot of every replica is complete (see loadDuringSnapshot)
      for (const n of env.reps.map((_, i) => `r${i + 1}`)) await agent!.waitForLog((l) => l.replica === n && /snapshot complete/.test(l.msg ?? ""), 60_000);
      note("snapshots complete");
    }
    writer = new Writer(env.src, { ddlEveryMs: plan.ddl ? 2500 : 0 });
    writer.start(2);
    await sleep(plan.warmup);
    for (const f of plan.faults) {
      await sleep(f.before);
      alive();
      note(describeStep(f));
      switch (f.kind) {
        case "agent-kill": {
          await agent!.kill("SIGKILL");
          await sleep(f.param);
          await startAgent();
          note("agent restarted");
          break;
        }
        case "replica-kill":
        case "source-kill": {
          const s = env.server(f.target);
          await s.kill();
          await sleep(f.param);
          await s.start();
          note(`${f.target} server restarted`);
          break;
        }
        case "latency": {
          const p = env.proxy(f.target);
          p.latency(f.param);
          await sleep(f.hold);
          p.latency(0);
          break;
        }
        case "drop": {
          note(`dropped ${env.proxy(f.target).drop()} connection(s)`);
          break;
        }
        case "stall-short": {
          const p = env.proxy(f.target);
          note(`stalled ${p.stall()} connection(s)`);
          await sleep(f.param);
          p.resume();
          break;
        }
        case "none":
          break;
        case "stall-binlog": {
          const p = env.proxy("source");
          const since = Date.now();
          const before = agent!.logs.length;
          const n = p.stall("binlog");
          note(`stalled ${n} binlog connection(s)`);
          if (n > 0) {
            // every stalled replica stream must be noticed by the agent itself (no restart, no resume)
            const stalledFor = new Set<string>();
            const want = Math.min(n, env.reps.length);
            await waitFor(
              async () => {
                alive();
                for (const l of agent!.logs.slice(before)) if (/binlog connection stalled/.test(l.msg ?? l.err ?? "") && l.replica) stalledFor.add(l.replica);
                return stalledFor.size >= want;
              },
              opts.stallDetectTimeoutMs ?? 90_000,
              `the agent to detect ${want} stalled binlog connection(s)`,
            ).catch((e) => {
              throw new RunFailure(`stall not detected: ${e.message}; detected for [${[...stalledFor].join(", ")}]`);
            });
            stallsDetected += stalledFor.size;
            note(`agent detected the stall for ${[...stalledFor].join(", ")} after ${((Date.now() - since) / 1000).toFixed(1)} s`);
          }
          p.resume();
          break;
        }
      }
    }
    await sleep(1000);
    const stats = await writer.stop();
    writer = null;
    alive();
    note(`load stopped: ${stats.committed} committed, ${stats.rolledBack} rolled back, ${stats.ddl} DDL, ${stats.errors} writer errors`);

    // catch-up, then the real verify and CHECKSUM TABLE per table
    for (const r of env.reps) {
      await waitCaughtUp(env.src, r, "chaos", opts.catchUpTimeoutMs ?? 90_000).catch((e) => {
        throw new RunFailure(`catch-up: ${e.message}`);
      });
    }
    alive();
    note("replicas caught up");
    const v = await runCliAsync(["verify", "--config", writeConfig(env.directConfig())]);
    if (v.code !== 0) throw new RunFailure(`datasync verify exited ${v.code}:\n${v.stdout}${v.stderr}`);
    const tables = await tableList(env.src, "shop");
    const want = await checksums(env.src, tables);
    for (let i = 0; i < env.reps.length; i++) {
      const r = env.reps[i];
      const got = await checksums(r, tables).catch((e) => ({ error: String(e) }) as Record<string, string>);
      const diff = tables.filter((t) => got[t] !== want[t]);
      const extra = (await tableList(r, "shop")).filter((t) => !tables.includes(t));
      if (diff.length || extra.length) throw new RunFailure(`r${i + 1}: CHECKSUM TABLE differs for ${diff.join(", ") || "-"}; tables only on the replica: ${extra.join(", ") || "-"} (verify said identical)`);
    }
    note(`identical: verify exit 0, ${tables.length} tables' checksums equal on ${env.reps.length} replicas`);
    // a row the decoder could not place is a bug even when the session's restart got past it
    const decoding = agents.flatMap((a) => a.logs).filter((l) => /decodes to no bytes|the table map does not describe|arrived without its table map/.test(`${l.msg ?? ""} ${l.err ?? ""}`));
    if (decoding.length) throw new RunFailure(`the agent hit a decoding error (a decoder bug; a restart got past it): ${decoding[0].msg ?? decoding[0].err}`);
    // SIGTERM must stop the agent cleanly (exit 0). A hang here is recorded (stopHung) and reported, but
    // does not fail the run: the run's verdict is about the replicas' data.
    let stopHung: string | undefined;
    const code = await Promise.race([agent!.kill("SIGTERM"), sleep(15_000).then(() => "timeout" as const)]);
    if (code !== 0) {
      const open = [...env.proxies.values()].flatMap((p) => p.connections().map((c) => `${p.name}#${c.id} ${c.kind}`));
      stopHung = `the agent did not exit within 15 s of SIGTERM (${code}) although it logged "${agent!.logs.at(-1)?.msg}"; connections still open through the proxies: ${open.join(", ") || "none"}`;
      note(`WARNING: ${stopHung}`);
    }
    return { seed: plan.seed, ok: true, ms: Date.now() - t0, timeline, committed: stats.committed, stallsDetected, stopHung };
  } catch (e: any) {
    const failure = e instanceof RunFailure ? e.message : `${e?.stack ?? e}`;
    note(`FAILED: ${failure.split("\n")[0]}`);
    const dir = join(opts.outDir ?? join(tmpdir(), "datasync-chaos"), `seed-${plan.seed}-${Date.now().toString(36)}`);
    mkdirSync(dir, { recursive: true });
    agents.forEach((a, i) => writeFileSync(join(dir, `agent-${i + 1}.log`), a.stdoutText + (a.stderr ? `\n--- stderr\n${a.stderr}` : "")));
    writeFileSync(join(dir, "timeline.txt"), [`seed ${plan.seed}`, JSON.stringify(plan, null, 2), ...timeline, "", failure].join("\n"));
    return { seed: plan.seed, ok: false, ms: Date.now() - t0, timeline, failure, logDir: dir, committed: 0, stallsDetected };
  } finally {
    if (writer) await (writer as Writer).stop().catch(() => undefined);
    for (const a of agents) await a.kill("SIGKILL").catch(() => undefined);
    for (const p of env.proxies.values()) {
      p.latency(0);
      p.resume();
    }
  }
}

/** the warn/error lines of a failed run's agents, for the report */
export function agentTail(logs: any[], n = 40): string[] {
  return logs
    .filter((l) => ["warn", "error", "fatal"].includes(l.level) || /stall|streaming|reconnect|snapshot/.test(l.msg ?? ""))
    .slice(-n)
    .map((l) => `${l.time ?? ""} ${l.replica ?? "-"} ${l.msg ?? l.raw ?? ""}${l.err ? ` err=${typeof l.err === "string" ? l.err : (l.err.message ?? JSON.stringify(l.err))}` : ""}`);
}
