// Cutover owns `datasync cutover` (DESIGN.md "Cutover"): the checks before the fence, then fence, drain,
// verify of what changed, promote, switch and the way back, with exit codes 0 done, 1 refused before the
// fence (nothing changed), 2 aborted after the fence (fence lifted, nothing promoted), 3 promoted but the
// switch command failed (the new primary stays primary, the old source read-only).
import { spawn } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import type { Config, Endpoint, ReplicaConfig } from "../config.js";
import { baseServerId, validateConfig } from "../config.js";
import { binlogStatus, connect, describeConnError, qualified, quoteId, type Conn } from "../db.js";
import { checkpointSql, ensureBookkeeping, heldDdlSql, readCheckpoint, SCHEMA } from "../bookkeeping.js";
import { cascadingChildren, ChangeTracker, compareKeys } from "../verify/changes.js";
import { acknowledgeCutover, readCutover, setCutoverState, writeCutover, isPromoted } from "./cutover-record.js";
import { normalizeDdl } from "../apply/ddl.js";
import { bypassAccounts, fence, holds, holdsOn, liftFence, needs, type FenceResult, type KilledTransaction } from "./fence.js";
import { identityKey, readServerIdentity, describeIdentity, type ServerIdentity } from "../identity.js";
import { checkReplicaPrivileges, readGrants, readVariables } from "../preflight.js";
import { comparePos, type Position } from "../source/positions.js";
import { checkBinlogSettings, checkSourcePrivileges, GROUP_RE, makeTableFilter, parseVersion, type Flavor } from "../rules.js";
import { scopeSignature } from "../snapshot/snapshot.js";
import { exitCodeOf, readShapes, runVerify, type VerifyOutcome } from "../verify/verifier.js";
import type { TableShape } from "../verify/ranges.js";

export interface CutoverOptions {
  to: string;
  /** seconds; default 5 */
  maxFreeze?: number;
  switchCommand?: string;
  reverseConfig?: string;
  reverseGroup?: string;
  dryRun?: boolean;
  /** how long an open write transaction may take to end by itself before it is killed (ms; default min(250, budget/8)) */
  killGraceMs?: number;
  /** progress lines (stderr in the CLI) */
  progress?: (line: string) => void;
}

export interface CutoverStep {
  name: string;
  seconds: number;
  ok: boolean;
  detail?: unknown;
  error?: string;
}

export interface CutoverReport {
  ok: boolean;
  exitCode: 0 | 1 | 2 | 3;
  group: string;
  replica: string;
  dryRun: boolean;
  /** fence to promoted; null when nothing was fenced */
  freezeSeconds: number | null;
  maxFreezeSeconds: number;
  finalPosition: Position | null;
  /** the verify before the fence and the one of the frozen source both passed */
  verified: boolean;
  steps: CutoverStep[];
  /** what refused the cutover before the fence (exit 1) */
  failures: string[];
  warnings: string[];
  /** accounts other than the agent's that bypass read_only (they could still write after the fence) */
  bypassAccounts: string[];
  killed: KilledTransaction[];
  fenceLifted?: boolean;
  verify?: { since: Position; transactions: number; tablesByKey: number; keysCompared: number; tablesWhole: string[]; differences: string[] };
  promoted?: { triggers: string[]; events: string[] };
  newPrimaryPosition?: Position | null;
  reverseConfig?: string;
  reverseGroup?: string;
  switch?: { command: string; exitCode: number | null; output: string };
  error?: string;
}

class Abort extends Error {
  constructor(
    message: string,
    readonly code: 1 | 2,
  ) {
    super(message);
  }
}

/** test seam: make the drain or the frozen verify fail (exit 2 path) */
const FAULT = process.env.DATASYNC_TEST_CUTOVER_FAULT ?? "";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const secs = (ms: number) => Math.round(ms) / 1000;
const where = (cfg: Config, i: number) => `replicas[${i}]`;

/** The source's current binlog end with its GTID position (MariaDB domain positions, MySQL executed set). */
export async function positionOf(c: Conn, flavor: Flavor): Promise<Position> {
  const st = await binlogStatus(c);
  if (!st) throw new Error("the server has no binary log (SHOW MASTER STATUS is empty); enable log_bin");
  const file = String(st.File);
  const pos = Number(st.Position);
  let gtid: string | null = null;
  if (flavor === "mariadb") {
    const [[g]] = await c.query<any[]>("SELECT BINLOG_GTID_POS(?, ?) AS g", [file, pos]);
    gtid = g.g || null;
  } else {
    const [[m]] = await c.query<any[]>("SELECT @@GLOBAL.gtid_mode AS m");
    if (/^ON$/i.test(String(m.m)) && st.Executed_Gtid_Set) gtid = String(st.Executed_Gtid_Set).replace(/\s/g, "");
  }
  return { file, pos, gtid };
}

async function flavorOf(c: Conn): Promise<Flavor> {
  const [[{ v }]] = await c.query<any[]>("SELECT VERSION() AS v");
  return parseVersion(String(v))!.flavor;
}

/** The agent's live view (its /readyz), when it answers at http.listen. */
async function liveAgent(cfg: Config): Promise<any | null> {
  const host = cfg.http.listen.replace(/^0\.0\.0\.0:/, "127.0.0.1:").replace(/^\[::\]:/, "[::1]:");
  if (/:0$/.test(host)) return null;
  try {
    const res = await fetch(`http://${host}/readyz`, { signal: AbortSignal.timeout(1500) });
    return await res.json();
  } catch {
    return null;
  }
}

/** Triggers and enabled events in the synced databases (tables in scope), with their definitions. */
async function schemaObjects(c: Conn, cfg: Config) {
  const inScope = makeTableFilter({ databases: cfg.databases, include: cfg.tables?.include, exclude: cfg.tables?.exclude });
  const [trg] = await c.query<any[]>("SELECT TRIGGER_SCHEMA AS db, TRIGGER_NAME AS name, EVENT_OBJECT_TABLE AS tbl FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA IN (?) ORDER BY ACTION_ORDER", [cfg.databases]);
  const [evs] = await c.query<any[]>("SELECT EVENT_SCHEMA AS db, EVENT_NAME AS name, STATUS AS status FROM information_schema.EVENTS WHERE EVENT_SCHEMA IN (?)", [cfg.databases]);
  return {
    triggers: trg.filter((t) => inScope(t.db, t.tbl)).map((t) => ({ db: String(t.db), name: String(t.name) })),
    events: evs.map((e) => ({ db: String(e.db), name: String(e.name), enabled: String(e.status).toUpperCase() === "ENABLED" })),
  };
}

async function showCreateTrigger(c: Conn, db: string, name: string): Promise<string> {
  const [[r]] = await c.query<any[]>(`SHOW CREATE TRIGGER ${qualified(db, name)}`);
  return normalizeDdl(String(r["SQL Original Statement"]));
}

/** The JSON agent config of the way back: source NAME, replicas the old source (`source`) and the others. */
export function reverseConfigOf(cfg: Config, to: string, group: string): Record<string, unknown> {
  const ep = (e: Endpoint) => {
    const { host, port, user, password, passwordEnv, passwordFile, tls } = e as any;
    return Object.fromEntries(Object.entries({ host, port, user, password, passwordEnv, passwordFile, tls }).filter(([, v]) => v !== undefined));
  };
  const name = cfg.replicas.find((r) => r.name === to)!;
  const { group: _g, source: _s, replicas: _r, stallSeconds, tables, ...rest } = cfg as any;
  return {
    group,
    source: ep(name),
    replicas: [{ name: "source", ...ep(cfg.source) }, ...cfg.replicas.filter((r) => r.name !== to).map((r) => ({ name: r.name, ...ep(r) }))],
    ...rest,
    ...(tables ? { tables } : {}),
    ...(stallSeconds !== undefined ? { stallSeconds } : {}),
  };
}

export async function runCutover(cfg: Config, o: CutoverOptions): Promise<CutoverReport> {
  const run = new CutoverRun(cfg, o);
  if (!run.checkOptions()) return run.rep;
  try {
    if (!(await run.connect())) return run.rep;
    await run.preconditions();
    await run.verifyBefore();
    if (o.dryRun) return run.dryRunDone();
    await run.fenceSource();
    await run.settleFinal();
    await run.drain();
    await run.verifyChanges();
    await run.promote();
    await run.switchOver();
    await run.wayBack();
    return await run.finish();
  } catch (e: any) {
    return await run.fail(e);
  } finally {
    await run.close();
  }
}

/**
 * One cutover: the report, the connections and what each phase hands the next (runCutover calls the phases in
 * order). A phase refuses by throwing Abort(1) before the fence; after the fence a failure lifts it (Abort(2)).
 */
class CutoverRun {
  readonly maxFreeze: number;
  readonly rep: CutoverReport;
  readonly say: (line: string) => void;
  readonly revGroup: string;
  readonly conns: Conn[] = [];
  readonly others: { name: string; conn: Conn | null }[] = [];
  tracker: ChangeTracker | null = null;
  idx = -1;
  nameCfg!: ReplicaConfig;
  src!: Conn;
  name!: Conn;
  flavor!: Flavor;
  srcId!: ServerIdentity;
  nameId!: ServerIdentity;
  srcLabel = "";
  nameLabel = "";
  shapes!: Map<string, TableShape>;
  p0!: Position;
  ctl!: Conn;
  aux!: Conn;
  fenceStart = 0;
  deadline = 0;
  fenced!: FenceResult;
  fin!: Position;
  newPos: Position | null = null;

  constructor(
    readonly cfg: Config,
    readonly o: CutoverOptions,
  ) {
    this.maxFreeze = o.maxFreeze ?? 5;
    this.rep = {
      ok: false,
      exitCode: 1,
      group: cfg.group,
      replica: o.to,
      dryRun: !!o.dryRun,
      freezeSeconds: null,
      maxFreezeSeconds: this.maxFreeze,
      finalPosition: null,
      verified: false,
      steps: [],
      failures: [],
      warnings: [],
      bypassAccounts: [],
      killed: [],
    };
    this.say = o.progress ?? (() => undefined);
    this.revGroup = o.reverseGroup ?? `${cfg.group}-rev`;
  }

  async step<T>(name: string, fn: () => Promise<T>, detail?: (r: T) => unknown): Promise<T> {
    const t = Date.now();
    this.say(`${name}…`);
    try {
      const r = await fn();
      this.rep.steps.push({ name, seconds: secs(Date.now() - t), ok: true, ...(detail ? { detail: detail(r) } : {}) });
      return r;
    } catch (e: any) {
      this.rep.steps.push({ name, seconds: secs(Date.now() - t), ok: false, error: e?.message ?? String(e) });
      throw e;
    }
  }

  async open(e: Endpoint, w: string, label: string): Promise<Conn | null> {
    try {
      const c = await connect(e, w);
      this.conns.push(c);
      return c;
    } catch (err) {
      this.rep.failures.push(describeConnError(err, label, e));
      return null;
    }
  }

  /** the options alone (nothing connected yet); false: refused, the failures are in the report */
  checkOptions(): boolean {
    const { cfg, o, rep, maxFreeze, revGroup } = this;
    this.idx = cfg.replicas.findIndex((r) => r.name === o.to);
    if (this.idx < 0) {
      rep.failures.push(`--to: no replica is named "${o.to}"; the config declares ${cfg.replicas.map((r) => r.name).join(", ")}`);
      return false;
    }
    if (!(maxFreeze > 0 && maxFreeze <= 3600)) {
      rep.failures.push(`--max-freeze ${o.maxFreeze}: give the longest write freeze in seconds (0 < S ≤ 3600), e.g. --max-freeze 5`);
      return false;
    }
    if (o.reverseConfig) {
      rep.reverseGroup = revGroup;
      if (!GROUP_RE.test(revGroup)) {
        rep.failures.push(
          `the reverse group name "${revGroup}" is ${revGroup.length > 40 ? `${revGroup.length} characters, over the limit of 40` : "not a valid group name ([a-z0-9][a-z0-9-]{0,39})"}; choose one with --reverse-group G`,
        );
      }
      if (!existsSync(dirname(o.reverseConfig))) rep.failures.push(`--reverse-config ${o.reverseConfig}: the directory ${dirname(o.reverseConfig)} does not exist`);
    }
    if (o.reverseGroup && !o.reverseConfig) rep.warnings.push("--reverse-group has no effect without --reverse-config OUT");
    if (rep.failures.length) return false;
    this.nameCfg = cfg.replicas[this.idx];
    return true;
  }

  /** the source, NAME and (for the way back) the other replicas; false: a connection failed (in the report) */
  async connect(): Promise<boolean> {
    const { cfg, o, idx, nameCfg } = this;
    const src = await this.open(cfg.source, "source", "source");
    const name = await this.open(nameCfg, where(cfg, idx), `replica ${o.to}`);
    for (let i = 0; i < cfg.replicas.length; i++) {
      if (i === idx) continue;
      const c = o.reverseConfig ? await this.open(cfg.replicas[i], where(cfg, i), `replica ${cfg.replicas[i].name}`) : null;
      this.others.push({ name: cfg.replicas[i].name, conn: c });
    }
    if (!src || !name) return false;
    this.src = src;
    this.name = name;
    this.flavor = await flavorOf(src);
    this.srcId = await readServerIdentity(src);
    this.nameId = await readServerIdentity(name);
    this.srcLabel = `source (${cfg.source.host}:${cfg.source.port})`;
    this.nameLabel = `replica ${o.to} (${nameCfg.host}:${nameCfg.port})`;
    return true;
  }

  // ------------------------------------------------------------------ preconditions
  async preconditions(): Promise<void> {
    await this.step("preconditions", async () => {
      const f = this.rep.failures;
      await this.checkServers(f);
      await this.checkStreaming(f);
      if (f.length) throw new Abort(`${f.length} precondition${f.length === 1 ? "" : "s"} failed`, 1);
    });
  }

  #lacking(f: string[], grants: string[], n: { what: string; anyOf: string[] }, who: string, user: string): void {
    if (!holds(grants, n)) f.push(`${who}: the account ${user} lacks ${n.anyOf.join(" or ")}, needed for ${n.what}. Fix: GRANT ${n.anyOf[0]} ON *.* TO <user>.`);
  }

  /** the source's and NAME's settings and grants, and that NAME is not the source itself */
  async checkServers(f: string[]): Promise<void> {
    const { cfg, o, rep, src, name, flavor, srcLabel, nameLabel, nameCfg } = this;
    const need = needs(flavor);
    // the source: the fence, and (way back) a replica of the reverse group that writes past read_only
    const sg = await readGrants(src);
    const [[ro]] = await src.query<any[]>("SELECT @@GLOBAL.read_only AS r");
    if (Number(ro.r) === 1) {
      // fenced beforehand (an Azure server's read_only is a server parameter, set through the API): keep it
      rep.warnings.push(`${srcLabel}: read_only is already ON; the cutover keeps it and sets nothing (an abort leaves it ON)`);
    } else this.#lacking(f, sg, need.setReadOnly, srcLabel, cfg.source.user);
    this.#lacking(f, sg, need.kill, srcLabel, cfg.source.user);
    this.#lacking(f, sg, need.process, srcLabel, cfg.source.user);
    if (o.reverseConfig) {
      this.#lacking(f, sg, need.bypass, srcLabel, cfg.source.user);
      f.push(...checkReplicaPrivileges(`${srcLabel} (a replica of the reverse group)`, sg, [...cfg.databases, SCHEMA]).map((x) => x.message));
      for (const db of cfg.databases) {
        for (const p of ["TRIGGER", "EVENT"]) if (!holdsOn(sg, p, db)) f.push(`${srcLabel}: the account ${cfg.source.user} lacks ${p} on \`${db}\`, needed to move the old source's ${p === "TRIGGER" ? "triggers into the reverse group's held DDL" : "events to disabled"}. Fix: GRANT ${p} ON \`${db}\`.* TO <user>.`);
      }
    }
    // NAME: it becomes the source, so the source rules apply; promote installs triggers and enables events
    const nv = await readVariables(name);
    f.push(...checkBinlogSettings(nameLabel, nv, flavor).map((x) => x.message));
    const sv = await readVariables(src);
    if (flavor === "mysql" && /^ON$/i.test(sv.gtid_mode ?? "") && !/^ON$/i.test(nv.gtid_mode ?? "")) {
      f.push(`${nameLabel}: gtid_mode is ${nv.gtid_mode ?? "unset"}, required ON like the source's, so the way back resumes by GTID. Fix: enable gtid_mode=ON (and enforce_gtid_consistency=ON) on the replica.`);
    }
    const ng = await readGrants(name);
    f.push(...checkSourcePrivileges(`${nameLabel} (the source of the reverse group)`, ng, flavor).map((x) => x.message));
    for (const db of cfg.databases) {
      for (const p of ["TRIGGER", "EVENT"]) if (!holdsOn(ng, p, db)) f.push(`${nameLabel}: the account ${nameCfg.user} lacks ${p} on \`${db}\`, needed to ${p === "TRIGGER" ? "install the held trigger DDL" : "enable the events"} at promote. Fix: GRANT ${p} ON \`${db}\`.* TO <user>.`);
    }
    const [[nro]] = await name.query<any[]>("SELECT @@GLOBAL.read_only AS r");
    if (Number(nro.r) === 1) this.#lacking(f, ng, need.setReadOnly, `${nameLabel} (read_only is ON; promote turns it OFF)`, nameCfg.user);
    if (identityKey(this.srcId) === identityKey(this.nameId)) f.push(`${nameLabel} is the source itself (${describeIdentity(this.srcId)}); choose a replica.`);
  }

  /** NAME is streaming with lag under --max-freeze and not cut over yet; the other replicas' grants; bypass accounts */
  async checkStreaming(f: string[]): Promise<void> {
    const { cfg, o, rep, src, name, flavor, nameLabel, maxFreeze, srcId } = this;
    const prior = await readCutover(name, cfg.group);
    if (isPromoted(prior)) f.push(`${nameLabel}: group ${cfg.group} was already cut over to ${prior!.toReplica} (state ${prior!.state}, ${prior!.updatedAt}); a rollback runs on the reverse config.`);
    const cp = await readCheckpoint(name, cfg.group).catch(() => null);
    const live = await liveAgent(cfg);
    const liveRow = live?.replicas?.find((r: any) => r.name === o.to);
    if (!cp) f.push(`${nameLabel}: no checkpoint of group ${cfg.group}; the agent has not synced it yet. Start the agent and wait until it streams.`);
    else if (cp.state !== "streaming") f.push(`${nameLabel}: the checkpoint is in state ${cp.state} (a snapshot in progress?); wait until the replica streams.`);
    else if (liveRow && liveRow.state !== "streaming") f.push(`${nameLabel}: the running agent reports state ${liveRow.state}${liveRow.lastError ? ` (${liveRow.lastError})` : ""}; it must be streaming.`);
    else {
      // lag from the checkpoint: 0 when it is at the source's end, else the age of its last applied commit
      // (an upper bound of the agent's lag; second resolution, so take the best of a few looks)
      let lag = Infinity;
      for (let i = 0; i < 10 && lag > 0; i++) {
        const end = await positionOf(src, flavor);
        const c = (await readCheckpoint(name, cfg.group))!;
        const l = comparePos(c.pos, end) >= 0 ? 0 : Math.max(0, (Date.now() - c.sourceTs) / 1000);
        lag = Math.min(lag, liveRow && typeof liveRow.lagSeconds === "number" ? Math.min(l, liveRow.lagSeconds) : l);
        if (lag >= maxFreeze) await sleep(100);
      }
      if (!(lag < maxFreeze)) f.push(`${nameLabel}: lag is ${Number.isFinite(lag) ? `${lag.toFixed(1)} s` : "unknown"}, not under --max-freeze ${maxFreeze} s; is the agent running and streaming? Wait until it catches up.`);
      if (cp.sourceId && cp.sourceId !== identityKey(srcId) && !cp.sourceId.startsWith(`${srcId.flavor}:`)) rep.warnings.push(`${nameLabel}: its checkpoint names another source (${cp.sourceId})`);
    }
    for (const x of this.others) {
      if (!x.conn) continue;
      const g = await readGrants(x.conn);
      f.push(...checkReplicaPrivileges(`replica ${x.name}`, g, [SCHEMA]).map((m) => m.message));
    }
    rep.bypassAccounts = await bypassAccounts(src, flavor);
    if (rep.bypassAccounts.length) {
      rep.warnings.push(`accounts that bypass read_only on the source can still write after the fence: ${rep.bypassAccounts.join(", ")} (${flavor === "mysql" ? "SUPER or CONNECTION_ADMIN" : "SUPER or READ_ONLY ADMIN"}); make sure the applications do not use them`);
    }
  }

  // ------------------------------------------------------------------ verify before the fence
  async verifyBefore(): Promise<void> {
    const { cfg, o, rep, src, flavor } = this;
    // the changes since the verify before the fence: a binlog reader from the position before that verify
    const inScope = makeTableFilter({ databases: cfg.databases, include: cfg.tables?.include, exclude: cfg.tables?.exclude });
    this.shapes = await readShapes(src, cfg);
    const children = await cascadingChildren(src, cfg.databases);
    this.p0 = await positionOf(src, flavor);
    if (!o.dryRun) {
      this.tracker = new ChangeTracker(cfg, flavor, baseServerId(cfg) + 40, this.p0, this.shapes, children, inScope);
      await this.tracker.start();
    }
    const before: VerifyOutcome = await this.step(
      "verify-before",
      () => runVerify(cfg, { replica: o.to }),
      (v) => ({ tables: v.tables.length, rows: v.sourceRows, identical: exitCodeOf(v) === 0 }),
    ).catch((e) => {
      throw new Abort(`the verify before the fence could not run: ${e?.message ?? e}`, 1);
    });
    if (exitCodeOf(before) !== 0) {
      const r = before.replicas[0];
      rep.failures.push(
        r?.error
          ? `verify of ${o.to} could not run: ${r.error}`
          : `verify: ${o.to} differs from the source in ${r?.tables.map((t) => t.table).join(", ")}; run \`datasync verify --replica ${o.to}\` and \`datasync repair\`, then cut over`,
      );
      throw new Abort("the verify before the fence failed", 1);
    }
  }

  dryRunDone(): CutoverReport {
    this.rep.ok = true;
    this.rep.exitCode = 0;
    this.rep.verified = true;
    return this.rep;
  }

  // ------------------------------------------------------------------ fence
  async fenceSource(): Promise<void> {
    const { cfg, o, rep, src, name, flavor, srcLabel, revGroup } = this;
    const budget = this.maxFreeze * 1000;
    this.fenceStart = Date.now();
    this.deadline = this.fenceStart + budget;
    const ctl = (await this.open(cfg.source, "source", "source"))!;
    const aux = (await this.open(cfg.source, "source", "source"))!;
    if (!ctl || !aux) throw new Abort("cannot open the source connections for the fence", 1);
    this.ctl = ctl;
    this.aux = aux;
    await writeCutover(name, { group: cfg.group, toReplica: o.to, reverseGroup: o.reverseConfig ? revGroup : null, role: "new-primary", state: "fencing" }, identityKey(this.srcId));
    let fenced: FenceResult;
    try {
      fenced = await this.step(
        "fence",
        () => fence(ctl, aux, budget, o.killGraceMs ?? Math.min(250, budget / 8), [ctl.threadId, aux.threadId, src.threadId].filter((x): x is number => typeof x === "number")),
        (r) => ({ killed: r.killed.length, readOnlyMs: r.readOnlyMs }),
      );
    } catch (e: any) {
      // the fence never took hold (e.g. SET GLOBAL refused): nothing changed
      await setCutoverState(name, cfg.group, "refused", e?.message).catch(() => undefined);
      if (e?.errno === 1227 || e?.errno === 1045) {
        rep.failures.push(`${srcLabel}: ${e.message}; the fence needs ${needs(flavor).setReadOnly.anyOf.join(" or ")}`);
        throw new Abort("the source refused read_only", 1);
      }
      throw e;
    }
    this.fenced = fenced;
    rep.killed = fenced.killed;
    if (!fenced.ok) {
      if (/denied|1227|privilege/i.test(fenced.error ?? "") && !fenced.killed.length) {
        await liftFence(ctl, fenced.wasReadOnly).catch(() => undefined);
        rep.fenceLifted = true;
        await setCutoverState(name, cfg.group, "refused", fenced.error).catch(() => undefined);
        rep.failures.push(`${srcLabel}: ${fenced.error}; the fence needs ${needs(flavor).setReadOnly.anyOf.join(" or ")} and ${needs(flavor).kill.anyOf.join(" or ")}`);
        throw new Abort("the source refused the fence", 1);
      }
      await this.lift(`fence: ${fenced.error}`);
    }
  }

  /** after the fence took hold: lift it and abort (exit 2) */
  async lift(why: string): Promise<never> {
    this.tracker?.stop().catch(() => undefined);
    await liftFence(this.ctl, this.fenced.wasReadOnly);
    this.rep.fenceLifted = true;
    await setCutoverState(this.name, this.cfg.group, "aborted", why).catch(() => undefined);
    throw new Abort(`${why}; the fence is lifted (read_only=${this.fenced.wasReadOnly ? "ON" : "OFF"} again) and nothing was promoted`, 2);
  }

  /** the final position: stable once read_only holds and the killed transactions rolled back */
  async settleFinal(): Promise<void> {
    const { cfg, o, rep, ctl, flavor } = this;
    const settle = async (): Promise<Position | null> => {
      let p = await positionOf(ctl, flavor);
      for (;;) {
        await sleep(20);
        const again = await positionOf(ctl, flavor);
        if (again.file === p.file && again.pos === p.pos) return p;
        p = again;
        if (Date.now() > this.deadline) return null;
      }
    };
    const settled = await settle();
    rep.steps[rep.steps.length - 1].seconds = secs(Date.now() - this.fenceStart);
    if (!settled) await this.lift("the source kept writing after read_only=ON (an account that bypasses read_only?)");
    const fin = settled!;
    this.fin = fin;
    rep.finalPosition = fin;
    await writeCutover(this.name, { group: cfg.group, toReplica: o.to, role: "new-primary", state: "draining", finalPosition: fin });
  }

  // ------------------------------------------------------------------ drain
  async drain(): Promise<void> {
    const { cfg, o, name, fin, deadline, maxFreeze } = this;
    try {
      await this.step(
        "drain",
        async () => {
          if (FAULT === "drain") throw new Error("test fault (DATASYNC_TEST_CUTOVER_FAULT=drain): the drain did not finish");
          for (;;) {
            const cp = await readCheckpoint(name, cfg.group);
            if (cp && comparePos(cp.pos, fin) >= 0) return cp.pos;
            if (Date.now() > deadline) throw new Error(`${o.to}'s checkpoint ${cp ? `${cp.pos.file}:${cp.pos.pos}` : "(none)"} did not reach the final position ${fin.file}:${fin.pos} within --max-freeze ${maxFreeze} s`);
            await sleep(10);
          }
        },
        (p) => ({ checkpoint: p }),
      );
    } catch (e: any) {
      await this.lift(`drain failed: ${e.message}`);
    }
  }

  // ------------------------------------------------------------------ verify what changed
  async verifyChanges(): Promise<void> {
    const { cfg, o, rep, name, ctl, shapes, fin, deadline, maxFreeze } = this;
    try {
      await this.step(
        "verify",
        async () => {
          if (FAULT === "verify") throw new Error("test fault (DATASYNC_TEST_CUTOVER_FAULT=verify): a difference was found");
          if (!(await this.tracker!.reached(fin, deadline))) throw new Error(`the change reader did not reach ${fin.file}:${fin.pos} within --max-freeze`);
          await this.tracker!.stop();
          const t = this.tracker!;
          this.tracker = null;
          const whole = t.allTables ? [...shapes.keys()] : [...t.whole];
          const differences: string[] = [];
          let keysCompared = 0;
          for (const [table, keys] of t.keys) {
            if (whole.includes(table)) continue;
            const s = shapes.get(table);
            if (!s) {
              whole.push(table);
              continue;
            }
            const ks = [...keys.values()];
            keysCompared += ks.length;
            const d = await compareKeys(ctl, name, s, ks);
            if (d.length) differences.push(`${table}: ${d.length} row${d.length === 1 ? "" : "s"} differ (first key ${JSON.stringify(d[0])})`);
            if (Date.now() > deadline) throw new Error(`the verify of the changed rows passed --max-freeze ${maxFreeze} s`);
          }
          if (whole.length) {
            const v = await runVerify(cfg, { replica: o.to, tables: whole.join(","), settleMs: [] });
            if (exitCodeOf(v) !== 0) {
              const r = v.replicas[0];
              differences.push(...(r?.error ? [`could not verify: ${r.error}`] : r.tables.map((x) => `${x.table}: ${x.kind} differ`)));
            }
          }
          rep.verify = { since: this.p0, transactions: t.transactions, tablesByKey: t.keys.size, keysCompared, tablesWhole: whole, differences };
          if (differences.length) throw new Error(`${o.to} differs from the frozen source: ${differences.join("; ")}`);
          if (Date.now() > deadline) throw new Error(`the verify passed --max-freeze ${maxFreeze} s`);
        },
        () => rep.verify,
      );
    } catch (e: any) {
      await this.lift(`verify failed: ${e.message}`);
    }
    rep.verified = true;
  }

  // ------------------------------------------------------------------ promote
  async promote(): Promise<void> {
    const { cfg, o, rep, name, ctl, flavor, fin, fenceStart, revGroup } = this;
    await this.step(
      "promote",
      async () => {
        const [[nro]] = await name.query<any[]>("SELECT @@GLOBAL.read_only AS r");
        if (Number(nro.r) === 1) await name.query("SET GLOBAL read_only = OFF");
        const srcObjs = await schemaObjects(ctl, cfg);
        const nameObjs = await schemaObjects(name, cfg);
        const triggers: string[] = [];
        for (const t of srcObjs.triggers) {
          if (nameObjs.triggers.some((x) => x.db === t.db && x.name === t.name)) continue;
          const sql = await showCreateTrigger(ctl, t.db, t.name);
          await name.query(`USE ${quoteId(t.db)}`);
          await name.query(sql);
          triggers.push(`${t.db}.${t.name}`);
        }
        const events: string[] = [];
        for (const e of srcObjs.events.filter((x) => x.enabled)) {
          if (!nameObjs.events.some((x) => x.db === e.db && x.name === e.name && !x.enabled)) continue;
          await name.query(`ALTER EVENT ${qualified(e.db, e.name)} ENABLE`);
          events.push(`${e.db}.${e.name}`);
        }
        rep.promoted = { triggers, events };
        const newPos = await positionOf(name, flavor);
        this.newPos = newPos;
        rep.newPrimaryPosition = newPos;
        rep.freezeSeconds = secs(Date.now() - fenceStart);
        await writeCutover(name, { group: cfg.group, toReplica: o.to, role: "new-primary", state: "promoted", finalPosition: fin, newPosition: newPos, freezeMs: Date.now() - fenceStart });
        for (const x of this.others) {
          if (!x.conn) continue;
          await writeCutover(x.conn, { group: cfg.group, toReplica: o.to, reverseGroup: o.reverseConfig ? revGroup : null, role: "replica", state: "promoted", finalPosition: fin, newPosition: newPos, freezeMs: Date.now() - fenceStart }, identityKey(this.srcId)).catch((e) =>
            rep.warnings.push(`replica ${x.name}: could not record the cutover (${e.message}); stop the forward agent by hand`),
          );
        }
      },
      () => rep.promoted,
    );
    this.say(`promoted ${o.to}: write freeze ${rep.freezeSeconds} s`);
    rep.exitCode = 0;
  }

  // ------------------------------------------------------------------ switch
  async switchOver(): Promise<void> {
    const { cfg, o, rep, nameCfg } = this;
    if (!o.switchCommand) return;
    const env = {
      ...process.env,
      DATASYNC_NEW_PRIMARY_HOST: nameCfg.host,
      DATASYNC_NEW_PRIMARY_PORT: String(nameCfg.port),
      DATASYNC_NEW_PRIMARY_NAME: o.to,
      DATASYNC_OLD_PRIMARY_HOST: cfg.source.host,
      DATASYNC_OLD_PRIMARY_PORT: String(cfg.source.port),
    };
    const r = await this.step("switch", () => runShell(o.switchCommand!, env), (x) => ({ exitCode: x.exitCode }));
    rep.switch = { command: o.switchCommand, exitCode: r.exitCode, output: r.output };
    if (r.exitCode !== 0) {
      rep.exitCode = 3;
      rep.error = `the switch command failed (exit ${r.exitCode}); ${o.to} is the primary and the old source stays read-only: fix the switch by hand`;
      rep.steps[rep.steps.length - 1].ok = false;
    }
  }

  // ------------------------------------------------------------------ way back
  async wayBack(): Promise<void> {
    const { cfg, o, rep, ctl, revGroup } = this;
    if (!o.reverseConfig) return;
    await this.step("way-back", async () => {
      const revCfgRaw = reverseConfigOf(cfg, o.to, revGroup);
      const revCfg = validateConfig(revCfgRaw);
      const sig = scopeSignature(revCfg);
      const cpFor = async (c: Conn) => {
        for (const sql of [
          "START TRANSACTION",
          `DELETE FROM ${SCHEMA}.checkpoints WHERE group_name = ${c.escape(revGroup)}`,
          `DELETE FROM ${SCHEMA}.snapshot WHERE group_name = ${c.escape(revGroup)}`,
          // a fresh row (the compare-and-set guard that follows it in checkpointSql needs multiple statements)
          checkpointSql(revGroup, identityKey(this.nameId), this.flavor, this.newPos!, Date.now(), 0, 0, null, "streaming", null).split(";\n")[0],
          `UPDATE ${SCHEMA}.checkpoints SET scope = ${c.escape(sig)} WHERE group_name = ${c.escape(revGroup)}`,
          "COMMIT",
        ])
          await c.query(sql);
      };
      await this.awaitAcknowledged();
      // the old source: a replica of the reverse group; its triggers are held there, its events disabled.
      // Kept out of its binlog where the account may (a forward agent still reading it must not apply them).
      await ctl.query("SET SESSION sql_log_bin = 0").catch(() => undefined);
      const oldObjs = await schemaObjects(ctl, cfg);
      await ensureBookkeeping(ctl);
      for (const t of oldObjs.triggers) {
        const sql = await showCreateTrigger(ctl, t.db, t.name);
        await ctl.query(heldDdlSql(revGroup, this.fin, t.db, sql));
        await ctl.query(`DROP TRIGGER ${qualified(t.db, t.name)}`);
      }
      for (const e of oldObjs.events.filter((x) => x.enabled)) await ctl.query(`ALTER EVENT ${qualified(e.db, e.name)} DISABLE`);
      for (const [c, label] of [[ctl, "source"], ...this.others.map((x) => [x.conn, x.name] as const)] as [Conn | null, string][]) {
        if (!c) continue;
        if (c !== ctl) await ensureBookkeeping(c);
        await multi(c, cpFor, label);
      }
      writeFileSync(o.reverseConfig!, JSON.stringify(revCfgRaw, null, 2) + "\n", { mode: 0o600 });
      rep.reverseConfig = o.reverseConfig;
      return revGroup;
    });
  }

  /** the forward agent stops applying when it sees the record (within its control poll) */
  async awaitAcknowledged(): Promise<void> {
    const { cfg, rep, name } = this;
    const live = await liveAgent(cfg);
    if (live) {
      const until = Date.now() + 15_000;
      while (Date.now() < until) {
        const r = await readCutover(name, cfg.group);
        if (r?.acknowledgedAt) break;
        await sleep(200);
      }
    }
    const r = await readCutover(name, cfg.group);
    if (!r?.acknowledgedAt) {
      if (live) rep.warnings.push(`the forward agent at ${cfg.http.listen} has not acknowledged the cutover yet; the reverse group starts once it has stopped applying`);
      else await acknowledgeCutover(name, cfg.group);
    }
  }

  async finish(): Promise<CutoverReport> {
    const { rep } = this;
    await setCutoverState(this.name, this.cfg.group, rep.exitCode === 3 ? "switch-failed" : "done").catch(() => undefined);
    rep.ok = rep.exitCode === 0;
    return rep;
  }

  /** the exit code of a failure: 1 before the fence, 2 between fence and promote (the fence lifted), 3 after promote */
  async fail(e: any): Promise<CutoverReport> {
    const { cfg, o, rep } = this;
    if (e instanceof Abort) {
      rep.exitCode = e.code;
      rep.error = e.message;
    } else if (rep.steps.some((s) => s.name === "promote" && s.ok)) {
      // after promote nothing is undone: NAME is the primary, the old source stays read-only
      rep.error = `after promote: ${e?.message ?? e}; ${o.to} is the primary, the old source stays read-only`;
      rep.exitCode = 3;
    } else if (rep.steps.some((s) => s.name === "fence")) {
      rep.error = `${e?.message ?? e}`;
      rep.exitCode = 2;
      // a failure between fence and promote: lift the fence
      try {
        const c = await connect(cfg.source, "source");
        await c.query("SET GLOBAL read_only = OFF");
        await c.end();
        rep.fenceLifted = true;
      } catch (x: any) {
        rep.error += `; lifting the fence failed too (${x.message}): SET GLOBAL read_only = OFF on the source by hand`;
      }
    } else {
      rep.error = `${e?.message ?? e}`;
      rep.exitCode = 1;
    }
    rep.ok = false;
    return rep;
  }

  async close(): Promise<void> {
    await this.tracker?.stop().catch(() => undefined);
    for (const c of this.conns) await c.end().catch(() => c.destroy());
  }
}

async function multi(c: Conn, fn: (c: Conn) => Promise<unknown>, label: string): Promise<void> {
  try {
    await fn(c);
  } catch (e: any) {
    await c.query("ROLLBACK").catch(() => undefined);
    throw new Error(`storing the reverse group's checkpoint on ${label}: ${e.message}`);
  }
}

function runShell(cmd: string, env: NodeJS.ProcessEnv): Promise<{ exitCode: number | null; output: string }> {
  return new Promise((resolve) => {
    const p = spawn("/bin/sh", ["-c", cmd], { env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    const add = (d: Buffer) => {
      out += d.toString();
      if (out.length > 8192) out = out.slice(-8192);
    };
    p.stdout.on("data", add);
    p.stderr.on("data", add);
    p.on("error", (e) => resolve({ exitCode: 127, output: String(e.message) }));
    p.on("close", (code) => resolve({ exitCode: code, output: out.trim() }));
  });
}

export function formatCutover(r: CutoverReport): string {
  const lines: string[] = [];
  for (const s of r.steps) lines.push(`${s.ok ? "✓" : "✗"} ${s.name} (${s.seconds.toFixed(3)} s)${s.error ? `: ${s.error}` : ""}`);
  for (const f of r.failures) lines.push(`  refused: ${f}`);
  for (const w of r.warnings) lines.push(`  warning: ${w}`);
  for (const k of r.killed) lines.push(`  killed: connection ${k.thread} (${k.user}@${k.host}${k.db ? `, db ${k.db}` : ""}), a transaction open since ${k.startedAt} with ${k.rowsModified} row(s) changed`);
  if (r.finalPosition) lines.push(`final position: ${r.finalPosition.file}:${r.finalPosition.pos}${r.finalPosition.gtid ? ` gtid ${r.finalPosition.gtid}` : ""}`);
  if (r.verify) lines.push(`verified while frozen: ${r.verify.keysCompared} changed rows in ${r.verify.tablesByKey} table(s)${r.verify.tablesWhole.length ? `, whole: ${r.verify.tablesWhole.join(", ")}` : ""}`);
  if (r.promoted) lines.push(`promoted ${r.replica}: ${r.promoted.triggers.length} trigger(s) installed, ${r.promoted.events.length} event(s) enabled`);
  if (r.freezeSeconds !== null) lines.push(`write freeze: ${r.freezeSeconds.toFixed(3)} s (max ${r.maxFreezeSeconds} s)`);
  if (r.switch) lines.push(`switch: exit ${r.switch.exitCode}${r.switch.output ? `: ${r.switch.output.split("\n").slice(-3).join(" | ")}` : ""}`);
  if (r.reverseConfig) lines.push(`way back: ${r.reverseConfig} (group ${r.reverseGroup}); start an agent with it, and roll back with \`datasync cutover --config ${r.reverseConfig} --to source\``);
  if (r.error) lines.push(`cutover: ${r.error}`);
  const verdict = r.dryRun
    ? r.exitCode === 0
      ? `dry run: every precondition holds; a cutover to ${r.replica} would proceed`
      : `dry run: the cutover would be refused (exit 1)`
    : r.exitCode === 0
      ? `cutover to ${r.replica} done`
      : r.exitCode === 1
        ? "cutover refused before the fence; nothing changed (exit 1)"
        : r.exitCode === 2
          ? "cutover aborted after the fence; the fence is lifted and nothing was promoted (exit 2)"
          : `cutover: ${r.replica} is promoted but the switch failed (exit 3)`;
  lines.push(verdict);
  return lines.join("\n") + "\n";
}
