// Provenance owns "is the checkpoint's source this server": the identity key stored with every checkpoint
// (identity.ts), and the older format `${flavor}:${uuid||server_id}@${hostname}` that earlier agents wrote,
// accepted as equal when it names the same server.
import type { Conn } from "../db.js";
import { binlogStatus } from "../db.js";
import { fmtMariadbGtid, mysqlGtidMissing, mysqlGtidSubset, parseMariadbGtidPos, parseMysqlGtidSet } from "./positions.js";
import { type Position } from "./positions.js";
import type { Flavor } from "../rules.js";

export function sameSourceId(stored: string, key: string): boolean {
  if (!stored || stored === key) return true;
  const legacy = /^(mysql|mariadb):([^@]+)@(.+)$/.exec(stored);
  if (!legacy) return false;
  const [, flavor, id, host] = legacy;
  if (flavor === "mysql") return key === `mysql:${id}`;
  // mariadb:<server_id>@<hostname>:<port><datadir>
  return key.startsWith(`mariadb:${id}@${host}:`);
}

export type HistoryProof = { ok: true; start: Position; how: string } | { ok: false; reason: string };

/**
 * On a source with another identity than the checkpoint's (a failover, the way back), the replica resumes
 * only when that source's binlog history provably holds the checkpoint's last transaction and everything
 * after it. MySQL: GTIDs are globally unique, so the checkpoint's set must be in @@gtid_executed and nothing
 * after it purged. MariaDB: GTIDs are not globally unique, so the event itself must be in the binlog: the
 * GTID event domain-server-seq with that originating server_id (an unrelated server's history numbers its
 * transactions with its own server_id), and its file not purged; the stream resumes right after its commit.
 */
export async function proveHistory(c: Conn, flavor: Flavor, cp: Position): Promise<HistoryProof> {
  if (!cp.gtid) {
    return { ok: false, reason: "the checkpoint has no GTID position (the old source logged none), so its place in another server's history cannot be proven" };
  }
  if (flavor === "mysql") {
    const [[v]] = await c.query<any[]>("SELECT @@GLOBAL.gtid_executed AS e, @@GLOBAL.gtid_purged AS p");
    const have = parseMysqlGtidSet(v.e);
    const purged = parseMysqlGtidSet(v.p);
    const want = parseMysqlGtidSet(cp.gtid);
    if (!mysqlGtidSubset(want, have)) return { ok: false, reason: `its history lacks transactions the replica has applied (${mysqlGtidMissing(want, have)})` };
    if (!mysqlGtidSubset(purged, want)) return { ok: false, reason: `it purged transactions the replica has not applied (${mysqlGtidMissing(purged, want)})` };
    const st = await binlogStatus(c);
    const exact = mysqlGtidSubset(have, want);
    const [logs] = await c.query<any[]>("SHOW BINARY LOGS");
    const start: Position = exact ? { file: String(st.File), pos: Number(st.Position), gtid: cp.gtid } : { file: String(logs[0].Log_name), pos: 4, gtid: cp.gtid };
    return { ok: true, start, how: "the checkpoint's GTID set is in the new source's gtid_executed and not purged" };
  }
  const want = parseMariadbGtidPos(cp.gtid);
  if (want.length === 0) return { ok: false, reason: `the checkpoint's GTID position "${cp.gtid}" is not readable` };
  const [logs] = await c.query<any[]>("SHOW BINARY LOGS");
  const files = logs.map((l) => String(l.Log_name));
  let start: Position | null = null;
  for (const g of want) {
    const found = await findMariadbGtid(c, files, g.domain, g.server, g.seq);
    if (!found.ok) return found;
    if (!start || files.indexOf(found.file) > files.indexOf(start.file) || (found.file === start.file && found.pos > start.pos)) start = { file: found.file, pos: found.pos, gtid: cp.gtid };
  }
  return { ok: true, start: start!, how: `the new source's binlog holds GTID ${want.map(fmtMariadbGtid).join(",")} from the same originating server` };
}

async function gtidListAt(c: Conn, file: string): Promise<Map<number, number> | null> {
  const [ev] = await c.query<any[]>(`SHOW BINLOG EVENTS IN ${c.escape(file)} LIMIT 0, 5`);
  const list = ev.find((e) => /gtid_list/i.test(String(e.Event_type)));
  if (!list) return null;
  const m = new Map<number, number>();
  for (const g of parseMariadbGtidPos(String(list.Info).replace(/[[\]]/g, ""))) m.set(g.domain, Math.max(m.get(g.domain) ?? 0, g.seq));
  return m;
}

async function findMariadbGtid(c: Conn, files: string[], domain: number, server: number, seq: number): Promise<{ ok: true; file: string; pos: number } | { ok: false; reason: string }> {
  const name = `${domain}-${server}-${seq}`;
  for (let i = files.length - 1; i >= 0; i--) {
    const at = await gtidListAt(c, files[i]);
    // the file starts after that GTID: look in an older one
    if (at && (at.get(domain) ?? 0) >= seq && i > 0) continue;
    if (at && (at.get(domain) ?? 0) >= seq && i === 0) break;
    const page = 5000;
    let inTxn = false;
    for (let off = 0; ; off += page) {
      const [ev] = await c.query<any[]>(`SHOW BINLOG EVENTS IN ${c.escape(files[i])} LIMIT ${off}, ${page}`);
      for (const e of ev) {
        const type = String(e.Event_type);
        if (/^gtid$/i.test(type)) {
          if (inTxn) return { ok: false, reason: `GTID ${name} in ${files[i]} has no commit` };
          const m = /GTID\s+(\d+)-(\d+)-(\d+)/i.exec(String(e.Info));
          if (m && Number(m[1]) === domain && Number(m[3]) === seq) {
            if (Number(m[2]) !== server || Number(e.Server_id) !== server) {
              return { ok: false, reason: `its GTID ${m[1]}-${m[2]}-${m[3]} comes from server_id ${e.Server_id}, not ${server}: another history numbered the same` };
            }
            inTxn = true;
            // a standalone DDL is the GTID's only event (its end is the next event's start)
            if (!/^BEGIN/i.test(String(e.Info))) {
              const next = ev[ev.indexOf(e) + 1];
              if (next) return { ok: true, file: files[i], pos: Number(next.Pos) };
            }
          }
        } else if (inTxn && (/^xid$/i.test(type) || (/^query$/i.test(type) && /^\s*COMMIT/i.test(String(e.Info))))) {
          return { ok: true, file: files[i], pos: Number(e.End_log_pos) };
        }
      }
      if (ev.length < page) break;
    }
    if (inTxn) return { ok: false, reason: `GTID ${name} in ${files[i]} has no commit yet` };
    if (at) break; // the GTID list says it would be in this file, and it is not
  }
  return { ok: false, reason: `its binlog does not hold GTID ${name} (the replica's last transaction), or that part was purged` };
}

