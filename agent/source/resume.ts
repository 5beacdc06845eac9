// Resume owns the source checks made when a replica's session starts, before its reader streams: the source's
// binlog settings again (a SET GLOBAL is lost at a source restart), the resume point inside the source's binlog
// history (a RESET MASTER starts it again), and on a source with another identity than the checkpoint's (a
// failover, the way back) the proof that its history holds the checkpoint (provenance.ts). ReplicaSync calls
// them; each fails with the typed error that decides the replica's state (down, needs-snapshot).
import type { Endpoint } from "../config.js";
import { describeConnError, type Conn } from "../db.js";
import { HistoryMismatchError, PurgedPositionError, ReplicaUnavailable } from "../errors.js";
import type { Logger } from "../log.js";
import { readVariables } from "../preflight.js";
import { checkBinlogSettings, type Flavor } from "../rules.js";
import type { Position } from "./positions.js";
import { proveHistory } from "./provenance.js";

/**
 * The checkpoint was written for another source server: resume only where this source's history provably
 * holds it (the start position the proof gives), else HistoryMismatchError.
 */
export async function proveOnNewSource(
  connectSource: () => Promise<Conn>,
  flavor: Flavor,
  sourceId: string,
  checkpointSource: string,
  pos: Position,
  log: Pick<Logger, "info">,
): Promise<Position> {
  const src = await connectSource();
  try {
    const proof = await proveHistory(src, flavor, pos);
    if (!proof.ok) throw new HistoryMismatchError(pos, checkpointSource, sourceId, proof.reason);
    log.info({ checkpointSource, source: sourceId, position: pos, start: proof.start }, `the checkpoint was written for another source server; resuming: ${proof.how}`);
    return proof.start;
  } finally {
    await src.end().catch(() => undefined);
  }
}

/**
 * The source's binlog rules again, at every reader (re)connect: a setting made with SET GLOBAL is lost
 * at a source restart (binlog_row_metadata=FULL most often), and events written without it cannot be
 * decoded safely. The replica waits (down, retried with backoff) naming the setting and the fix.
 */
export async function checkSource(connectSource: () => Promise<Conn>, source: Endpoint, flavor: Flavor, resume: Position | null): Promise<void> {
  let c: Conn;
  try {
    c = await connectSource();
  } catch (err) {
    throw new ReplicaUnavailable("source", describeConnError(err, "source", source), err);
  }
  try {
    const failures = checkBinlogSettings(`source (${source.host}:${source.port})`, await readVariables(c), flavor);
    if (failures.length) throw new ReplicaUnavailable("source-settings", `the source's binlog settings changed since the agent started: ${failures.map((f) => f.message).join(" ")}`);
    if (resume) await checkHistory(c, flavor, resume);
  } finally {
    await c.end().catch(() => undefined);
  }
}

/**
 * The resume point must lie in the source's binlog history. A RESET MASTER (RESET BINARY LOGS AND GTIDS)
 * starts the history again: the checkpoint's file may exist again but be shorter than its position,
 * and its GTIDs are no longer executed; a reader started there would wait for positions that never
 * come (or the source refuses it, again and again). That is a replica that needs a new snapshot.
 */
export async function checkHistory(c: Pick<Conn, "query">, flavor: Flavor, resume: Position): Promise<void> {
  const [logs] = await c.query<any[]>("SHOW BINARY LOGS");
  const file = logs.find((r) => String(r.Log_name) === resume.file);
  if (file && Number(file.File_size) < resume.pos) {
    throw new PurgedPositionError(resume, `binlog file ${resume.file} is ${file.File_size} bytes long, shorter than the checkpoint's position ${resume.pos}`, true);
  }
  if (!resume.gtid) return;
  if (flavor === "mysql") {
    const [[r]] = await c.query<any[]>("SELECT GTID_SUBSET(?, @@GLOBAL.gtid_executed) AS ok, @@GLOBAL.gtid_executed AS executed", [resume.gtid]);
    if (!Number(r.ok)) throw new PurgedPositionError(resume, `the source's executed GTIDs (${String(r.executed).replace(/\s/g, "") || "none"}) do not contain the checkpoint's`, true);
    return;
  }
  const [[r]] = await c.query<any[]>("SELECT @@GLOBAL.gtid_binlog_pos AS pos");
  const have = new Map<string, bigint>();
  for (const g of String(r.pos ?? "").split(",").filter(Boolean)) {
    const [d, , n] = g.trim().split("-");
    have.set(d, BigInt(n));
  }
  for (const g of resume.gtid.split(",").filter(Boolean)) {
    const [d, , n] = g.trim().split("-");
    const h = have.get(d);
    if (h !== undefined && BigInt(n) > h) {
      throw new PurgedPositionError(resume, `the source's binlog ends at GTID ${String(r.pos)}, before the checkpoint's ${g.trim()} in domain ${d}`, true);
    }
  }
}
