// Status owns `datasync status`: per replica the checkpoint (from `_datasync`), the source's current
// position, and the live lag/state from the running agent's /readyz when it answers.
import type { Config } from "../config.js";
import { connect, describeConnError, type Conn } from "../db.js";
import { readCheckpoint, SCHEMA } from "../bookkeeping.js";
import { cutoverView, readCutover, type CutoverView } from "./cutover-record.js";
import { binlogEnd } from "../snapshot/snapshot.js";
import { comparePos, type Position } from "../source/positions.js";

export interface ReplicaStatusRow {
  name: string;
  reachable: boolean;
  error?: string;
  checkpoint: Position | null;
  checkpointUpdatedAt: string | null;
  appliedTransactions: number | null;
  state: string | null;
  behindSource: boolean | null;
  lagSeconds: number | null;
  snapshot: unknown;
  live: boolean;
  /** a cutover of the group recorded on this replica: in progress (fencing, draining) or its outcome */
  cutover: CutoverView | null;
  /** the writer lease on the replica (agent/ops/writer-lock.ts): which agent holds the group's writer lock */
  writer: WriterLease | null;
}

export interface WriterLease {
  holder: string;
  host: string;
  pid: number;
  since: string;
  renewedAgoSeconds: number;
  /** renewed_at older than the lease period: the holder stopped renewing (a successor may take over) */
  expired: boolean;
  released: boolean;
}

export interface StatusReport {
  group: string;
  source: { position: Position | null; error?: string };
  agent: { reachable: boolean; ready?: boolean; address: string };
  replicas: ReplicaStatusRow[];
}

async function fetchLive(listen: string): Promise<any | null> {
  const host = listen.replace(/^0\.0\.0\.0:/, "127.0.0.1:").replace(/^\[::\]:/, "[::1]:");
  try {
    const res = await fetch(`http://${host}/readyz`, { signal: AbortSignal.timeout(1500) });
    return await res.json();
  } catch {
    return null;
  }
}

export async function status(cfg: Config): Promise<StatusReport> {
  const out: StatusReport = { group: cfg.group, source: { position: null }, agent: { reachable: false, address: cfg.http.listen }, replicas: [] };
  try {
    const c = await connect(cfg.source, "source");
    try {
      out.source.position = (await binlogEnd(c)) ?? null;
    } finally {
      await c.end();
    }
  } catch (err) {
    out.source.error = describeConnError(err, "source", cfg.source);
  }
  const live = await fetchLive(cfg.http.listen);
  if (live) {
    out.agent.reachable = true;
    out.agent.ready = live.ready;
  }
  for (let i = 0; i < cfg.replicas.length; i++) {
    const r = cfg.replicas[i];
    const row: ReplicaStatusRow = { name: r.name, reachable: false, checkpoint: null, checkpointUpdatedAt: null, appliedTransactions: null, state: null, behindSource: null, lagSeconds: null, snapshot: null, live: false, cutover: null, writer: null };
    try {
      const c = await connect(r, `replicas[${i}]`);
      try {
        row.reachable = true;
        const [s] = await c.query<any[]>("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", [SCHEMA]);
        const cp = s.length ? await readCheckpoint(c, cfg.group) : null;
        row.cutover = s.length ? cutoverView(await readCutover(c, cfg.group)) : null;
        if (s.length) row.writer = await readLease(c, cfg.group);
        if (cp && cp.state === "snapshot") {
          const [sn] = await c.query<any[]>(`SELECT SUM(rows_copied) AS c, SUM(GREATEST(rows_estimate, rows_copied)) AS e, SUM(state <> 'done') AS left_ FROM ${SCHEMA}.snapshot WHERE group_name = ?`, [cfg.group]);
          row.snapshot = { done: false, rowsCopied: Number(sn[0].c ?? 0), rowsEstimate: Number(sn[0].e ?? 0), tablesLeft: Number(sn[0].left_ ?? 0) };
        }
        if (cp) {
          row.checkpoint = cp.pos;
          row.checkpointUpdatedAt = cp.updatedAt;
          row.appliedTransactions = cp.appliedTxns;
          row.state = cp.state;
          if (out.source.position) row.behindSource = comparePos(cp.pos, out.source.position) < 0;
        } else {
          row.state = "no checkpoint (the agent has not synced this replica yet)";
        }
      } finally {
        await c.end();
      }
    } catch (err) {
      row.error = describeConnError(err, `replica ${r.name}`, r);
    }
    const l = live?.replicas?.find((x: any) => x.name === r.name);
    if (l) {
      row.live = true;
      row.lagSeconds = l.lagSeconds;
      row.state = l.state;
      row.snapshot = l.snapshot ?? row.snapshot;
    } else if (row.behindSource === false) {
      row.lagSeconds = 0;
    }
    out.replicas.push(row);
  }
  return out;
}

async function readLease(c: Conn, group: string): Promise<WriterLease | null> {
  const [t] = await c.query<any[]>("SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'writer'", [SCHEMA]);
  if (!t.length) return null;
  const [rows] = await c.query<any[]>(`SELECT holder, host, pid, started_at, ttl_ms, released_at, TIMESTAMPDIFF(MICROSECOND, renewed_at, NOW(6)) AS age_us FROM ${SCHEMA}.writer WHERE group_name = ?`, [group]);
  if (!rows.length) return null;
  const w = rows[0];
  const age = Number(w.age_us) / 1e6;
  return { holder: w.holder, host: w.host, pid: Number(w.pid), since: w.started_at, renewedAgoSeconds: Math.round(age * 10) / 10, expired: age * 1000 >= Number(w.ttl_ms), released: w.released_at !== null };
}

function fmtWriter(w: WriterLease | null): string {
  if (!w) return "-";
  const who = `${w.host}:${w.pid}`;
  if (w.released) return `none (${who} released)`;
  return w.expired ? `${who} (lease expired ${w.renewedAgoSeconds}s ago)` : who;
}

const fmt = (p: Position | null) => (p ? `${p.file}:${p.pos}${p.gtid ? ` gtid ${p.gtid}` : ""}` : "-");

export function formatStatus(s: StatusReport): string {
  const lines = [
    `group ${s.group}`,
    `source position: ${s.source.error ? `unavailable: ${s.source.error}` : fmt(s.source.position)}`,
    `agent http ${s.agent.address}: ${s.agent.reachable ? (s.agent.ready ? "ready" : "not ready") : "not reachable (lag shown from checkpoints only)"}`,
    "",
  ];
  // the writer column comes last: the first columns keep the layout scripts already read
  const rows = [["replica", "state", "snapshot", "checkpoint", "lag", "applied tx", "updated", "writer"]];
  for (const r of s.replicas) {
    const sn: any = r.snapshot;
    let snap = "-";
    if (sn && !sn.done) {
      const pct = sn.rowsEstimate ? Math.min(100, Math.round((100 * sn.rowsCopied) / sn.rowsEstimate)) : 0;
      snap = `snapshot ${pct}% (${sn.rowsCopied}/${sn.rowsEstimate} rows${sn.rate ? `, ${sn.rate} rows/s` : ""}${sn.etaSeconds != null ? `, ETA ${sn.etaSeconds}s` : ""})`;
    } else if (sn && sn.done) snap = "done";
    rows.push([
      r.name,
      r.error ? `unreachable` : (r.state ?? "-"),
      snap,
      fmt(r.checkpoint),
      r.lagSeconds === null ? (r.behindSource ? "behind" : "-") : `${r.lagSeconds.toFixed(1)}s`,
      r.appliedTransactions === null ? "-" : String(r.appliedTransactions),
      r.checkpointUpdatedAt ?? "-",
      fmtWriter(r.writer),
    ]);
  }
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  for (const r of rows) lines.push(r.map((c, i) => c.padEnd(w[i])).join("  ").trimEnd());
  for (const r of s.replicas) if (r.error) lines.push(`  ${r.name}: ${r.error}`);
  const cut = s.replicas.find((r) => r.cutover)?.cutover;
  if (cut) lines.push(`cutover to ${cut.to}: ${cut.state}${cut.freezeSeconds !== null ? ` (write freeze ${cut.freezeSeconds.toFixed(3)} s)` : ""}, ${cut.updatedAt}${cut.detail ? `: ${cut.detail}` : ""}`);
  return lines.join("\n") + "\n";
}
