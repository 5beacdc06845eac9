// Positions owns where a replica stands in the source's binlog and how two places compare: a binlog position
// (file, offset, and the GTID position after it), its order (by the file's sequence number, never by the file
// name as a string: binlog.1000000 follows binlog.999999), its text in logs and errors; and the comparison of
// GTID positions across servers: MySQL GTID sets (uuid:intervals, globally unique, so a subset test proves one
// history contains another) and MariaDB GTID positions (domain-server-seq per domain, not globally unique: a
// containment needs the event itself as proof).

/** A resume position: the end of a source transaction's commit event, with the GTID position after it. */
export interface Position {
  file: string;
  pos: number;
  /** MariaDB GTID position ("0-1-42,1-1-7") or MySQL GTID set ("uuid:1-42"); resumes by GTID when set */
  gtid?: string | null;
  /**
   * MariaDB: XA transactions prepared before this position and still open at it. Their prepared parts are
   * past the position (MariaDB's GTID position has no holes) yet not applied, so a reader starting here
   * (an agent restart) starts at `since`, the position before the oldest of them, re-reads and parks them,
   * and hands over nothing up to this position (it was applied). Kept with the checkpoint (xa_open).
   */
  xa?: { since: { file: string; pos: number; gtid?: string | null } };
}

/** The sequence number of a binlog file (binlog.000042 → 42; the server numbers them in order). */
export function binlogSeq(file: string): number {
  return Number(/(\d+)$/.exec(file)?.[1] ?? 0);
}

/** Compare binlog positions by the file's sequence number, then the offset (< 0, 0, > 0 as a sort comparator). */
export function comparePos(a: { file: string; pos: number }, b: { file: string; pos: number }): number {
  // the same file (the common case: the reader and the queue compare per source transaction)
  if (a.file === b.file) return a.pos - b.pos;
  const fa = binlogSeq(a.file);
  const fb = binlogSeq(b.file);
  if (fa !== fb) return fa - fb;
  // same number, other base name (log-bin renamed): no order is known; a stable one keeps sorting total
  if (a.file !== b.file) return a.file < b.file ? -1 : 1;
  return a.pos - b.pos;
}

/** `p` is at or past `target` (a replica's checkpoint reached a source position). */
export function atOrPast(p: { file: string; pos: number }, target: { file: string; pos: number }): boolean {
  return comparePos(p, target) >= 0;
}

/** A position as logs and errors name it: `file:pos (GTID …)`. */
export function fmtPos(p: Position): string {
  return `${p.file}:${p.pos}${p.gtid ? ` (GTID ${p.gtid})` : ""}`;
}

/** A MySQL GTID set: uuid (lower case) → sorted, merged [start, end] intervals. */
export type MysqlGtidSet = Map<string, [number, number][]>;

export function parseMysqlGtidSet(text: string | null | undefined): MysqlGtidSet {
  const out: MysqlGtidSet = new Map();
  for (const part of String(text ?? "").replace(/\s/g, "").split(",").filter(Boolean)) {
    const [uuid, ...ivs] = part.split(":");
    const list = out.get(uuid.toLowerCase()) ?? [];
    for (const iv of ivs) {
      // MySQL 8.4 tagged GTIDs ("uuid:tag:1-5") carry a tag segment: keep it in the key
      if (!/^\d/.test(iv)) continue;
      const [a, b] = iv.split("-").map(Number);
      list.push([a, b ?? a]);
    }
    list.sort((x, y) => x[0] - y[0]);
    const merged: [number, number][] = [];
    for (const iv of list) {
      const last = merged[merged.length - 1];
      if (last && iv[0] <= last[1] + 1) last[1] = Math.max(last[1], iv[1]);
      else merged.push([iv[0], iv[1]]);
    }
    out.set(uuid.toLowerCase(), merged);
  }
  return out;
}

/** a ⊆ b */
export function mysqlGtidSubset(a: MysqlGtidSet, b: MysqlGtidSet): boolean {
  for (const [uuid, ivs] of a) {
    const have = b.get(uuid) ?? [];
    for (const [s, e] of ivs) if (!have.some(([x, y]) => x <= s && e <= y)) return false;
  }
  return true;
}

/** What of a is not in b, as text (for messages). */
export function mysqlGtidMissing(a: MysqlGtidSet, b: MysqlGtidSet): string {
  const parts: string[] = [];
  for (const [uuid, ivs] of a) {
    const have = b.get(uuid) ?? [];
    const miss = ivs.filter(([s, e]) => !have.some(([x, y]) => x <= s && e <= y));
    if (miss.length) parts.push(`${uuid}:${miss.map(([s, e]) => (s === e ? `${s}` : `${s}-${e}`)).join(":")}`);
  }
  return parts.join(",");
}

export interface MariadbGtid {
  domain: number;
  server: number;
  seq: number;
}

/** "0-1-42,1-2-7" → one GTID per domain */
export function parseMariadbGtidPos(text: string | null | undefined): MariadbGtid[] {
  return String(text ?? "")
    .replace(/\s/g, "")
    .split(",")
    .filter(Boolean)
    .map((g) => {
      const [domain, server, seq] = g.split("-").map(Number);
      return { domain, server, seq };
    })
    .filter((g) => Number.isFinite(g.domain) && Number.isFinite(g.server) && Number.isFinite(g.seq));
}

export const fmtMariadbGtid = (g: MariadbGtid) => `${g.domain}-${g.server}-${g.seq}`;
