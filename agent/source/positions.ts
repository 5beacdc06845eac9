// Gtid owns the comparison of GTID positions across servers: MySQL GTID sets (uuid:intervals, globally
// unique, so a subset test proves one history contains another) and MariaDB GTID positions
// (domain-server-seq per domain, not globally unique: a containment needs the event itself as proof).

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
