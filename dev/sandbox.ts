// Sandbox owns `datasync sandbox` (what `npm start` runs): private servers (a primary and N replicas), the
// sample shop, the agent in-process (its JSON log goes to a file), a steady workload, live progress, and at
// the end (Ctrl-C or --duration) the catch-up, verify and summary. Exit 0 only when verified identical.
import { accessSync, constants, existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import pino from "pino";
import { validateConfig, type Config, type RawConfig } from "../agent/config.js";
import { binlogStatus } from "../agent/db.js";
import { createLogger } from "../agent/log.js";
import { Agent } from "../agent/main.js";
import { createShop, Heartbeat, LagProbe, Workload } from "./sandbox-shop.js";
import { createDisplay, formatSummary, type Display, type ReplicaSummary, type Summary, type View } from "./sandbox-ui.js";
import { serverBinary, startServers, type TestServer } from "./servers.js";
import { exitCodeOf, verifyOrError } from "../agent/verify/verifier.js";
import { formatCutover, runCutover, type CutoverReport } from "../agent/ops/cutover.js";
import { formatVerify } from "../agent/verify/commands.js";
import { atOrPast } from "../agent/source/positions.js";

export interface SandboxOptions {
  /** number of replicas, 1..5 (a string from the command line); default 2 */
  replicas?: string | number;
  /** stop after this many seconds; default: at Ctrl-C */
  duration?: string | number;
  /** leave the servers running and print how to reuse them */
  keep?: boolean;
  /** end with `datasync cutover` to replica1 under the workload (the workload writes as an account without SUPER) */
  cutover?: boolean;
}

export interface SandboxIo {
  out: NodeJS.WriteStream;
  err: NodeJS.WritableStream;
}

const MAX_REPLICAS = 5;
/** how long the replicas may take to apply everything once the workload stopped */
const CATCH_UP_MS = 120_000;
const TICK_MS = 200;

class UsageError extends Error {}

function parseOptions(o: SandboxOptions): { replicas: number; durationMs: number | null; keep: boolean; cutover: boolean } {
  const rs = String(o.replicas ?? "2").trim();
  const replicas = Number(rs);
  if (!/^\d+$/.test(rs) || replicas < 1 || replicas > MAX_REPLICAS) {
    throw new UsageError(`--replicas must be a whole number from 1 to ${MAX_REPLICAS} (got "${rs}"); a primary has at most ${MAX_REPLICAS} replicas`);
  }
  let durationMs: number | null = null;
  if (o.duration !== undefined) {
    const d = Number(String(o.duration).trim());
    if (!Number.isFinite(d) || d <= 0) throw new UsageError(`--duration must be a positive number of seconds (got "${o.duration}")`);
    durationMs = d * 1000;
  }
  return { replicas, durationMs, keep: !!o.keep, cutover: !!o.cutover };
}

/** The repository root (for .sandbox/): the nearest folder above this module with a package.json. */
export function repoRoot(): string | null {
  let d = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(d, "package.json"))) return d;
    d = dirname(d);
  }
  return null;
}

/** .sandbox/ in the repository when writable, else $TMPDIR/datasync-sandbox */
export function sandboxBase(): string {
  const root = repoRoot();
  if (root) {
    const base = join(root, ".sandbox");
    try {
      mkdirSync(base, { recursive: true });
      accessSync(base, constants.W_OK);
      return base;
    } catch {
      // a read-only checkout: fall through to the temporary directory
    }
  }
  const base = join(tmpdir(), "datasync-sandbox");
  mkdirSync(base, { recursive: true });
  return base;
}

const display = (p: string) => {
  const rel = relative(process.cwd(), p);
  return rel && !rel.startsWith("..") ? rel : p;
};

/** the sandbox's agent config (also the soak's, dev/soak.ts) */
export function agentConfig(src: TestServer, replicas: TestServer[], listen: string): RawConfig {
  const ep = (s: TestServer) => ({ host: "127.0.0.1", port: s.port, user: "root", password: "" });
  return {
    group: "sandbox",
    source: ep(src),
    replicas: replicas.map((r, i) => ({ name: `replica${i + 1}`, ...ep(r) })),
    databases: ["shop"],
    http: { listen },
    heartbeatSeconds: 0.2,
    // throttled a little so the snapshot is visible on ~50,000 rows
    snapshot: { chunkRows: 2000, rowsPerSecond: 20_000 },
    logLevel: "info",
  };
}

/** `datasync sandbox`: 0 when the replicas verified identical, 1 otherwise, 2 on bad options. */
export async function sandbox(o: SandboxOptions, io: SandboxIo = { out: process.stdout, err: process.stderr }): Promise<number> {
  let opts: ReturnType<typeof parseOptions>;
  try {
    opts = parseOptions(o);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    io.err.write(`datasync sandbox: ${e.message}\n`);
    return 2;
  }
  serverBinary(); // fails early, naming the package to install

  const base = sandboxBase();
  const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\..*/, "").replace("T", "-");
  const runDir = join(base, `run-${stamp}-${process.pid}`);
  const serversDir = join(runDir, "servers");
  mkdirSync(serversDir, { recursive: true });
  const logFile = join(runDir, "agent.log");
  const ui: Display = createDisplay(io.out);
  const say = (line: string) => ui.note(line);

  // Ctrl-C: the first one finishes the run properly (catch up, verify, summary); a second one aborts.
  let stopRequested: (why: string) => void = () => undefined;
  const stopped = new Promise<string>((resolve) => (stopRequested = resolve));
  let signals = 0;
  let servers: TestServer[] = [];
  let cleaningUp = false;
  const onSignal = (sig: NodeJS.Signals) => {
    if (cleaningUp) return; // the run is over; the servers are being removed
    signals++;
    if (signals === 1) {
      stopRequested(sig === "SIGINT" ? "Ctrl-C" : sig);
      return;
    }
    io.err.write(`\ndatasync sandbox: ${sig} again: aborting without verification${opts.keep ? "" : " (removing the servers)"}\n`);
    const done = opts.keep ? Promise.resolve() : Promise.all(servers.map((s) => s.destroy().catch(() => undefined))).then(() => rmSync(runDir, { recursive: true, force: true }));
    void done.finally(() => process.exit(130));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  // a crash must not leave private servers behind (kill() sends SIGKILL synchronously)
  const onExit = () => {
    if (opts.keep) return;
    for (const s of servers) void s.kill();
    try {
      rmSync(runDir, { recursive: true, force: true });
    } catch {}
  };
  process.on("exit", onExit);

  let agent: Agent | null = null;
  let workload: Workload | null = null;
  let heartbeat: Heartbeat | null = null;
  let probes: LagProbe[] = [];
  let ok = false;
  let cfg: Config | null = null;
  try {
    say(`datasync sandbox: starting a primary and ${opts.replicas} replica${opts.replicas === 1 ? "" : "s"} (private MariaDB servers under ${display(runDir)})`);
    servers = await startServers([
      { name: "primary", baseDir: serversDir, serverId: 1 },
      ...Array.from({ length: opts.replicas }, (_, i) => ({ name: `replica${i + 1}`, baseDir: serversDir, serverId: 101 + i, noBinlog: !(opts.cutover && i === 0) })),
    ]);
    // the servers are copies of one initialized datadir; the template is not needed any more
    rmSync(join(serversDir, `template-${process.pid}`), { recursive: true, force: true });
    rmSync(join(serversDir, `template-${process.pid}.tmp`), { recursive: true, force: true });
    const [src, ...reps] = servers;
    const [[v]] = [await src.query<any[]>("SELECT VERSION() AS v")];
    say(`  primary   127.0.0.1:${src.port} (${v.v})`);
    reps.forEach((r, i) => say(`  replica${i + 1}  127.0.0.1:${r.port}`));

    const prefill = await createShop(src);
    say(`sample schema shop (customers, products, orders, order_lines with foreign keys): ${prefill.rows.toLocaleString("en-US")} rows on the primary`);

    cfg = validateConfig(agentConfig(src, reps, "127.0.0.1:0"));
    const logger = createLogger(cfg.logLevel, pino.destination({ dest: logFile, sync: true }));
    agent = new Agent(cfg, { logger });
    await agent.start();
    const t1 = Date.now();
    say(`agent running in-process (log: ${display(logFile)}; metrics: http://${agent.httpAddress}/metrics)`);
    // a cutover fences the primary with read_only, which an account with SUPER (root) would bypass
    const writer = opts.cutover ? await appAccount(src) : src;
    workload = new Workload(writer, prefill, { ratePerSecond: 40 });
    workload.start();
    heartbeat = new Heartbeat(writer, 200);
    await heartbeat.start();
    const a = agent;
    const streaming = (name: string) => {
      const r = a.status().replicas.find((x) => x.name === name);
      // new replicas: streaming measurements start once the snapshot is done
      return !!r && r.state === "streaming" && r.snapshot !== null && r.snapshot.done;
    };
    probes = cfg.replicas.map((r, i) => new LagProbe(r.name, reps[i], () => streaming(r.name)));
    probes.forEach((p) => p.start(50));
    say(
      `sample workload: ~40 transactions/s (orders, lines, updates, deletes, key changes); ${opts.durationMs ? `stopping after ${opts.durationMs / 1000} s` : "Ctrl-C stops it"}, then the replicas are verified`,
    );

    const view = (): View => ({
      elapsedMs: Date.now() - t1,
      untilMs: opts.durationMs ?? undefined,
      replicas: a.status().replicas,
      e2eLagMs: new Map(probes.map((p) => [p.name, p.lastLagMs])),
      workload: workload!.stats,
    });
    const timer = opts.durationMs ? setTimeout(() => stopRequested("duration"), opts.durationMs) : null;
    let why = "";
    void stopped.then((w) => (why = w));
    while (!why) {
      ui.update(view());
      await Promise.race([stopped, new Promise((r) => setTimeout(r, TICK_MS))]);
    }
    if (timer) clearTimeout(timer);
    ui.update(view());

    // finish: no new writes, then one last beat; a replica that shows it has applied everything before it
    say(`${why === "duration" ? `${opts.durationMs! / 1000} s elapsed` : `${why} received`}: stopping the workload and waiting for the replicas to catch up`);
    let cutover: CutoverReport | null = null;
    let finalSeq = -1;
    if (opts.cutover) {
      // a cutover needs replica1 past its snapshot and streaming (it refuses otherwise)
      const until = Date.now() + 600_000;
      while (!(streaming("replica1") && (a.status().replicas[0].lagSeconds ?? 99) < 2) && Date.now() < until) {
        ui.update(view());
        await new Promise((r) => setTimeout(r, TICK_MS));
      }
      // the last beat lands before the fence; the workload keeps writing through the cutover
      finalSeq = await heartbeat.stop();
      ui.close();
      say("cutover to replica1 under the workload: verify, fence, drain, verify what changed, promote…");
      cutover = await runCutover(cfg, { to: "replica1", maxFreeze: 5 });
      io.out.write(formatCutover(cutover));
      say(cutover.freezeSeconds !== null ? `write freeze: ${cutover.freezeSeconds.toFixed(3)} s (from read_only=ON on the primary to replica1 promoted)` : "no write freeze: the cutover did not fence");
    }
    const wl = await workload.stop();
    if (!opts.cutover) finalSeq = await heartbeat.stop();
    const tStop = Date.now();
    // caught up: past its snapshot, checkpoint at the source's end, and the last beat visible
    const endConn = await src.connect();
    const end = await binlogStatus(endConn).finally(() => endConn.end().catch(() => undefined)); // SHOW BINARY LOG STATUS on MySQL 8.4+
    const target = { file: String(end.File), pos: Number(end.Position) };
    const caughtUp = () =>
      a.status().replicas.every((r, i) => (r.snapshot === null || r.snapshot.done) && r.position !== null && atOrPast(r.position, target) && probes[i].lastSeq >= finalSeq);
    let catchUpMs: number | null = null;
    while (Date.now() - tStop < CATCH_UP_MS) {
      if (caughtUp()) {
        catchUpMs = Date.now() - tStop;
        break;
      }
      ui.update(view());
      await new Promise((r) => setTimeout(r, 50));
    }
    ui.close();
    if (catchUpMs === null) say(`the replicas did not catch up within ${CATCH_UP_MS / 1000} s; verifying anyway`);
    await Promise.all(probes.map((p) => p.stop()));
    const final = a.status();
    await stopAgent(a, io.err);
    agent = null;

    say("verifying: chunked checksums of every table, source against each replica…");
    const { outcome, verifyError } = await verifyOrError(cfg);
    const code = outcome ? exitCodeOf(outcome) : 2;
    ok = code === 0 && catchUpMs !== null && (!cutover || cutover.exitCode === 0);
    const replicas: ReplicaSummary[] = final.replicas.map((r, i) => {
      const ro = outcome?.replicas.find((x) => x.name === r.name);
      return {
        name: r.name,
        state: r.state,
        appliedTransactions: r.appliedTransactions,
        appliedRows: r.appliedRows,
        snapshotRows: r.snapshot ? r.snapshot.rowsCopied : null,
        lagSamples: probes[i].samples,
        verify: !ro || ro.error ? "not verified" : ro.tables.length ? "differs" : "identical",
      };
    });
    const identical = replicas.filter((r) => r.verify === "identical").length;
    const summary: Summary = {
      durationMs: Date.now() - t1,
      prefillRows: prefill.rows,
      workload: wl,
      catchUpMs,
      replicas,
      verify: outcome ? { tables: outcome.tables.length, sourceRows: outcome.sourceRows, durationMs: outcome.durationMs, exitCode: code, report: formatVerify(outcome) } : null,
      verdict: ok
        ? `replicas identical (${identical} of ${replicas.length} verified against the source)`
        : verifyError
          ? `not verified: ${verifyError}`
          : code === 0
            ? "not verified: the replicas did not catch up"
            : `replicas NOT identical (${identical} of ${replicas.length} identical; see above, and ${display(logFile)})`,
      ok,
    };
    io.out.write(formatSummary(summary));

    if (opts.keep) printKeep(io.out, cfg, servers, runDir, logFile);
    return ok ? 0 : 1;
  } finally {
    cleaningUp = true;
    await Promise.all(probes.map((p) => p.stop().catch(() => undefined)));
    await workload?.stop().catch(() => undefined);
    await heartbeat?.stop().catch(() => undefined);
    if (agent) await stopAgent(agent, io.err).catch(() => undefined);
    if (opts.keep) {
      // the servers are children of this process; nothing else keeps it alive once the run is over
      setTimeout(() => process.exit(), 100).unref();
    } else {
      await Promise.all(servers.map((s) => s.destroy().catch(() => undefined)));
      // the last run's agent log stays at .sandbox/agent.log
      const keepLog = join(base, "agent.log");
      try {
        if (existsSync(logFile)) renameSync(logFile, keepLog);
        if (!ok) io.err.write(`datasync sandbox: the agent's log is in ${display(keepLog)}\n`);
      } catch {}
      rmSync(runDir, { recursive: true, force: true });
    }
    process.off("exit", onExit);
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

/** a replica's checkpoint is at or past a source position (the agent's own comparison) */
export { atOrPast };

/**
 * Stop the agent. A stop while a snapshot chunk is in flight can reject that chunk's promise before the
 * copier awaits it (an agent bug, reported); in the sandbox that one rejection must not end the process
 * before the summary, so it is noted instead.
 */
async function stopAgent(agent: Agent, err: NodeJS.WritableStream): Promise<void> {
  const onRejection = (reason: unknown) => {
    const msg = (reason as Error)?.message ?? String(reason);
    if (msg !== "replica session ended") throw reason;
    err.write("datasync sandbox: note: a snapshot chunk was abandoned by the stop (it resumes at the next start)\n");
  };
  process.on("unhandledRejection", onRejection);
  try {
    await agent.stop();
    // the rejection is reported after the stop has settled
    await new Promise((r) => setImmediate(r));
  } finally {
    process.off("unhandledRejection", onRejection);
  }
}

function printKeep(out: NodeJS.WritableStream, cfg: Config, servers: TestServer[], runDir: string, logFile: string): void {
  const raw = agentConfig(servers[0], servers.slice(1), "127.0.0.1:9464");
  const file = join(runDir, "agent-config.json");
  writeFileSync(file, JSON.stringify(raw, null, 2) + "\n");
  const lines = [
    "",
    "--keep: the servers are still running (as root, no password, on 127.0.0.1):",
    `  primary    mariadb -h 127.0.0.1 -P ${servers[0].port} -u root shop`,
    ...servers.slice(1).map((s, i) => `  ${cfg.replicas[i].name.padEnd(10)} mariadb -h 127.0.0.1 -P ${s.port} -u root shop`),
    `the agent config for these servers: ${display(file)}`,
    `  run the agent again (it resumes from the replicas' checkpoints): npx datasync agent --config ${display(file)}`,
    `  other commands: npx datasync status|verify|check --config ${display(file)}`,
    `agent log of this run: ${display(logFile)}`,
    "stop the servers when done:",
    ...servers.map((s) => `  mariadb-admin -h 127.0.0.1 -P ${s.port} -u root shutdown`),
    `and remove ${display(runDir)}`,
  ];
  out.write(lines.join("\n") + "\n");
}

/** An application account for the sandbox's writers: DML on shop, no privilege that bypasses read_only. */
async function appAccount(src: TestServer): Promise<TestServer> {
  await src.query("CREATE USER IF NOT EXISTS 'shop_app'@'127.0.0.1' IDENTIFIED BY 'shop-app'");
  await src.query("GRANT SELECT, INSERT, UPDATE, DELETE ON shop.* TO 'shop_app'@'127.0.0.1'");
  return new Proxy(src, {
    get(target, prop) {
      if (prop === "connect") return (extra: object = {}) => target.connect({ user: "shop_app", password: "shop-app", ...extra });
      const v = (target as any)[prop];
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}
