// Main is the only wiring: it checks the source (fatal at start), starts one ReplicaSync per replica,
// polls the source's binlog end (the heartbeat behind lag), serves HTTP, and stops cleanly on signals.
import { TRACE } from "./apply/applier.js";
import type { Config } from "./config.js";
import { baseServerId, redactConfig } from "./config.js";
import { binlogStatus, connect, type Conn } from "./db.js";
import { startHttp, type HttpServer } from "./ops/http.js";
import { createLogger, type Logger } from "./log.js";
import { Metrics } from "./ops/metrics.js";
import { checkReplicaServers, preflightSource, proveDistinctServer, type SourceFacts } from "./preflight.js";
import type { Position } from "./source/positions.js";
import { ReplicaSync, type ReplicaStatus } from "./replica.js";
import { BinlogReader, type ReaderOptions } from "./source/reader.js";
import { threadedReaders } from "./source/reader-thread.js";
import { StreamHub } from "./source/shared-stream.js";
import { SharedBuilds } from "./apply/shared-builds.js";
import { makeTableFilter } from "./rules.js";
import { identityKey, readServerIdentity } from "./identity.js";
import { readCutoverByReverse } from "./ops/cutover-record.js";
import { GroupWriter } from "./ops/writer-lock.js";
import { StartupError } from "./errors.js";
import { warmUp } from "./source/warmup.js";

/** DATASYNC_WARMUP_TXNS: source transactions the start-up warm-up decodes and builds (source/warmup.ts); 0: none (to measure without it) */
const WARMUP_TXNS = Number(process.env.DATASYNC_WARMUP_TXNS ?? 3000);

/** How often the agent logs its status line (one JSON line per minute: name, state, lagSeconds per replica). */
const STATUS_LINE_MS = 60_000;

export interface AgentOptions {
  logger?: Logger;
  /** serve HTTP (default true) */
  http?: boolean;
}

export class Agent {
  readonly cfg: Config;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly replicas: ReplicaSync[] = [];
  #opts: AgentOptions;
  #src: Conn | null = null;
  #facts: SourceFacts | null = null;
  #end: { pos: Position; at: number } | null = null;
  #poll: NodeJS.Timeout | null = null;
  /** the periodic status line (msg "status") that log-based alerts read, e.g. the Azure lag alert */
  #statusLine: NodeJS.Timeout | null = null;
  #http: HttpServer | null = null;
  #stopped = false;
  #writer: GroupWriter | null = null;

  constructor(cfg: Config, opts: AgentOptions = {}) {
    this.cfg = cfg;
    this.#opts = opts;
    this.log = opts.logger ?? createLogger(cfg.logLevel);
    this.metrics = new Metrics();
    this.metrics.binlogReaders.set({ group: cfg.group }, 0);
  }

  get httpAddress(): string | null {
    return this.#http?.address ?? null;
  }

  /** Start-up checks and the replica pipelines. Throws StartupError for config and source problems. */
  async start(): Promise<void> {
    const cfg = this.cfg;
    this.log.info({ config: redactConfig(cfg) }, "starting");
    const { report, facts } = await preflightSource(cfg);
    if (report.failures.length || !facts) {
      throw new StartupError(`the source fails preflight:\n  - ${report.failures.map((f) => f.message).join("\n  - ")}`);
    }
    for (const w of report.warnings) this.log.warn(w);
    const sameServer = await checkReplicaServers(cfg, facts); // before any write: each replica is a server of its own
    if (sameServer.length) throw new StartupError(`a replica is not a server of its own:\n  - ${sameServer.map((f) => f.message).join("\n  - ")}`);
    this.#facts = facts;
    this.#src = await connect(cfg.source, "source");
    const sourceId = await this.#sourceId();
    await this.#refuseWhileForwardApplies();
    if (this.#opts.http !== false) {
      try {
        this.#http = await startHttp(cfg.http.listen, this);
      } catch (err: any) {
        await this.#src.end().catch(() => undefined);
        throw new StartupError(`cannot listen on http.listen ${cfg.http.listen}: ${err.code ?? err.message}; choose a free address (http: { listen: "127.0.0.1:PORT" })`);
      }
      this.log.info({ listen: this.#http.address }, "http listening (/healthz, /readyz, /metrics)");
    }
    await this.#pollEnd();
    this.#poll = setInterval(() => void this.#pollEnd(), Math.max(100, cfg.heartbeatSeconds * 1000));
    this.#statusLine = setInterval(() => {
      const st = this.status();
      this.log.info({ ready: st.ready, replicas: st.replicas.map((r) => ({ name: r.name, state: r.state, lagSeconds: r.lagSeconds })) }, "status");
    }, STATUS_LINE_MS);
    this.#statusLine.unref();
    const filter = { databases: cfg.databases, include: cfg.tables?.include, exclude: cfg.tables?.exclude };
    const inScope = makeTableFilter(filter);
    // apply.sharedStream (default on): replicas reading at the same position share one binlog connection and one
    // decode (source/shared-stream.ts); off, each replica reads on a connection of its own
    const hub = cfg.apply.sharedStream
      ? new StreamHub({
          // apply.readerThread: the shared reader reads and decodes on a thread of its own (source/reader-thread.ts); one
          // such thread at a time: a replica reading on its own for a while does so on the main thread
          makeReader: cfg.apply.readerThread ? threadedReaders(1, { source: cfg.source, scope: filter }) : (o: ReaderOptions) => new BinlogReader(o),
          scope: inScope,
          note: (fields, msg) => this.log.info(fields, msg),
          onReaders: (n) => this.metrics.binlogReaders.set({ group: cfg.group }, n),
          replicas: cfg.replicas.length,
          // a replica that keeps taking may lag the fastest by up to the group's queue budget before it reads on its own
          maxSlackBytes: cfg.apply.queueBytes,
        })
      : null;
    if (hub && cfg.apply.readerThread) this.log.info({ readerThread: true }, "the shared binlog stream is read and decoded on a thread of its own (apply.readerThread)");
    const ctx = {
      facts,
      sourceId,
      serverIdBase: baseServerId(cfg),
      end: () => this.#end,
      currentPosition: () => this.#currentPosition(),
      binlogFiles: async () => {
        const c = await connect(cfg.source, "source");
        try {
          const [rows] = await c.query<any[]>("SHOW BINARY LOGS");
          return rows.map((r) => String(r.Log_name));
        } finally {
          await c.end().catch(() => undefined);
        }
      },
      inScope,
      // building once for fan-out: replicas whose tables have the same shape share a source transaction's statements
      builds: cfg.replicas.length > 1 ? new SharedBuilds({ replicas: cfg.replicas.length }) : null,
      writerGate: (i: number) => this.#writer!.gate(i),
      openStream: hub ? hub.open : (o: ReaderOptions) => this.#ownReader(o),
      streamStats: hub ? () => hub.stats : undefined,
      // every connection a replica's pipeline opens, made here (the replica's own takes multiple statements)
      connectReplica: (i: number, opts?: { multipleStatements?: boolean }) => connect(cfg.replicas[i], `replicas[${i}]`, opts),
      connectSource: () => connect(cfg.source, "source"),
    };
    // the decode-and-build path compiled before the first real transactions (source/warmup.ts), while the replicas
    // connect (not awaited: it yields between slices and must not delay the start); never fatal
    if (WARMUP_TXNS > 0) {
      warmUp(facts.version.flavor, WARMUP_TXNS).then(
        (w) => this.log.info(w, "warm-up done"),
        (err) => this.log.warn({ err: err?.message }, "warm-up failed; the agent runs without it"),
      );
    }
    if (TRACE) {
      // with DATASYNC_TRACE_BATCHES: the times the event loop was held over 30 ms (a stall that is the agent's, not a server's)
      let last = Date.now();
      setInterval(() => {
        const t = Date.now();
        if (t - last > 40) process.stderr.write(`at=${t % 100000} event loop held ${t - last - 10} ms\n`);
        last = t;
      }, 10).unref();
    }
    // one writer per group and replica: a standby's pipelines wait for the locks (no binlog connection)
    this.#writer = new GroupWriter(cfg, this.log, this.metrics, undefined, (c, i) => proveDistinctServer(c, cfg, i, facts));
    this.#writer.start();
    const own = replicaConfig(cfg);
    cfg.replicas.forEach((_, i) => {
      const r = new ReplicaSync(own, i, ctx, this.log, this.metrics);
      this.replicas.push(r);
      r.start();
    });
  }

  #readers = 0;

  /** a replica's binlog reader of its own, counted in datasync_binlog_readers while it runs */
  #ownReader(o: ReaderOptions): BinlogReader {
    const r = new BinlogReader(o);
    const gauge = () => this.metrics.binlogReaders.set({ group: this.cfg.group }, this.#readers);
    const start = r.start.bind(r);
    const stop = r.stop.bind(r);
    let counted = false;
    r.start = async () => {
      counted = true;
      this.#readers++;
      gauge();
      return start();
    };
    r.stop = async () => {
      if (counted) {
        counted = false;
        this.#readers--;
        gauge();
      }
      return stop();
    };
    return r;
  }

  /** The source's identity (DESIGN.md "Server identity"), recorded with every checkpoint. */
  async #sourceId(): Promise<string> {
    return identityKey(await readServerIdentity(this.#src!));
  }

  /**
   * A reverse group (the way back of a cutover) starts only once the forward group's agent has stopped
   * applying to its source (the new primary): it acknowledges the cutover record when it stops.
   */
  async #refuseWhileForwardApplies(): Promise<void> {
    const rec = await readCutoverByReverse(this.#src!, this.cfg.group).catch(() => null);
    if (rec && !rec.acknowledgedAt) {
      await this.#src!.end().catch(() => undefined);
      this.#src = null;
      throw new StartupError(
        `group ${this.cfg.group} is the way back of the cutover of group ${rec.group} to ${rec.toReplica} (${rec.updatedAt}), and that group's agent has not stopped applying to this source yet; stop the agent of group ${rec.group} (it stops by itself within seconds of the cutover) and start this one again`,
      );
    }
  }

  async #masterStatus(): Promise<any> {
    // a half-open source connection must not freeze the heartbeat: the poll times out
    return binlogStatus(this.#src!);
  }

  /** The source's current end; also the heartbeat that tells a caught-up replica from a lagging one. */
  #polling = false;

  async #pollEnd(): Promise<void> {
    if (this.#stopped || this.#polling) return;
    this.#polling = true;
    try {
      if (!this.#src) this.#src = await connect(this.cfg.source, "source");
      const st = await this.#masterStatus();
      if (st) {
        const pos = { file: String(st.File), pos: Number(st.Position) };
        if (!this.#end || this.#end.pos.file !== pos.file || this.#end.pos.pos !== pos.pos) this.#end = { pos, at: Date.now() };
      }
      for (const r of this.replicas) r.status();
    } catch (err: any) {
      this.metrics.errors.inc({ group: this.cfg.group, replica: "", kind: "source" });
      this.log.warn({ err: err?.message }, "cannot read the source's binlog position; retrying");
      const c = this.#src;
      this.#src = null;
      c?.destroy();
    } finally {
      this.#polling = false;
    }
  }

  async #currentPosition(): Promise<Position> {
    if (!this.#src) this.#src = await connect(this.cfg.source, "source");
    const st = await this.#masterStatus();
    if (!st) throw new Error("the source has no binary log (SHOW MASTER STATUS is empty); enable log_bin");
    const file = String(st.File);
    const pos = Number(st.Position);
    let gtid: string | null = null;
    if (this.#facts!.version.flavor === "mariadb") {
      const [[g]] = await this.#src.query<any[]>("SELECT BINLOG_GTID_POS(?, ?) AS g", [file, pos]);
      gtid = g.g || null;
    } else if (st.Executed_Gtid_Set && /^(ON|1)$/i.test(this.#facts!.vars.gtid_mode ?? "")) {
      gtid = String(st.Executed_Gtid_Set).replace(/\s/g, "");
    }
    return { file, pos, gtid };
  }

  status(): { group: string; ready: boolean; replicas: ReplicaStatus[] } {
    const replicas = this.replicas.map((r) => r.status());
    // a replica whose group was cut over has done its job: it does not hold readiness back
    const ready = replicas.every((r) => r.state === "cut-over" || (r.connected && (r.snapshot === null || r.snapshot.done) && r.lagSeconds !== null && r.lagSeconds <= this.cfg.readyLagSeconds));
    return { group: this.cfg.group, ready, replicas };
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#poll) clearInterval(this.#poll);
    if (this.#statusLine) clearInterval(this.#statusLine);
    await Promise.all(this.replicas.map((r) => r.stop()));
    // the locks go only once nothing writes any more
    await this.#writer?.stop();
    await this.#http?.close();
    const src = this.#src;
    if (src) {
      // a stalled source connection would never answer COM_QUIT
      const ended = await Promise.race([src.end().then(() => true, () => true), new Promise<boolean>((r) => setTimeout(() => r(false), 2000).unref())]);
      if (!ended) src.destroy();
    }
    this.log.info({ replicas: this.replicas.map((r) => ({ name: r.name, position: r.status().position })) }, "stopped; checkpoints saved");
  }
}

/** `datasync agent`: run until SIGTERM/SIGINT. 0 on a clean stop, 1 on a start-up failure. */
export async function runAgent(cfg: Config): Promise<number> {
  const log = createLogger(cfg.logLevel);
  const agent = new Agent(cfg, { logger: log });
  try {
    await agent.start();
  } catch (err: any) {
    const msg = err instanceof StartupError ? err.message : `start-up failed: ${err?.message ?? err}`;
    log.fatal(msg);
    process.stderr.write(`datasync: ${msg}\n`);
    await agent.stop().catch(() => undefined);
    await new Promise<void>((r) => log.flush(() => r()));
    return 1;
  }
  await new Promise<void>((resolve) => {
    const onSignal = (sig: string) => {
      log.info({ signal: sig }, "stopping: finishing in-flight transactions");
      resolve();
    };
    process.once("SIGTERM", () => onSignal("SIGTERM"));
    process.once("SIGINT", () => onSignal("SIGINT"));
  });
  await agent.stop();
  await new Promise<void>((r) => log.flush(() => r()));
  return 0;
}

/**
 * `apply.queueBytes` bounds the whole agent: each replica's queue gets an even share (at least 2 MiB), and
 * a target transaction at most half of that share, so five replicas catching up hold no more than one.
 */
export function replicaConfig(cfg: Config): Config {
  const share = Math.max(2 << 20, Math.floor(cfg.apply.queueBytes / cfg.replicas.length));
  return { ...cfg, apply: { ...cfg.apply, queueBytes: share, maxBytes: Math.min(cfg.apply.maxBytes, Math.floor(share / 2)) } };
}
