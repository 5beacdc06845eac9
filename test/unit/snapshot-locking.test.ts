// Locking chunk reads are a setting of one copier, not of the process (issue 16): with two replicas, the source
// refusing one copier's locking read (or one copier switching to consistent snapshots) must not turn locking off
// for the other. Before, ChunkReader.locking was a static that every replica overwrote.
import { describe, it, expect } from "vitest";
import { ChunkReader, type ReadLocking } from "../../agent/snapshot/snapshot.js";
import type { TableMeta } from "../../agent/tables.js";
import type { Conn } from "../../agent/db.js";

const meta: TableMeta = {
  db: "shop", table: "t", columns: ["id", "v"], writable: ["id", "v"], writableSet: new Set(["id", "v"]),
  types: new Map([["id", "int"], ["v", "varchar"]]), primaryKey: ["id"], hasSecondaryUnique: false,
};

/** a source that refuses locking reads (errno 1142, as MySQL 8.0.22+ without LOCK TABLES) when `refuse` */
function fakeSource(refuse: boolean): { conn: Conn; sql: string[] } {
  const sql: string[] = [];
  const conn = {
    async query(q: any) {
      const text = typeof q === "string" ? q : q.sql;
      sql.push(text);
      if (refuse && text.includes("LOCK IN SHARE MODE")) throw Object.assign(new Error("SELECT command denied"), { errno: 1142 });
      return [[[1, "a"]], []];
    },
  } as unknown as Conn;
  return { conn, sql };
}

describe("ChunkReader locking is per copier", () => {
  it("a refusal turns locking off for that copier only, and says so once", async () => {
    const refused: unknown[] = [];
    const a: ReadLocking = { on: true, onRefused: (e) => refused.push(e) };
    const b: ReadLocking = { on: true };
    const sa = fakeSource(true);
    const sb = fakeSource(false);
    await new ChunkReader(sa.conn, meta, null, 10, a).next();
    await new ChunkReader(sb.conn, meta, null, 10, b).next();
    expect(a.on).toBe(false);
    expect(refused).toHaveLength(1);
    expect(b.on).toBe(true);
    expect(sb.sql[0]).toMatch(/LOCK IN SHARE MODE$/);
    // the refused copier's next table reads plainly, without asking again
    await new ChunkReader(sa.conn, meta, [1], 10, a).next();
    expect(sa.sql.at(-1)).not.toMatch(/LOCK IN SHARE MODE/);
    expect(refused).toHaveLength(1);
  });

  it("reads plainly by default", async () => {
    const s = fakeSource(false);
    await new ChunkReader(s.conn, meta, null, 10).next();
    expect(s.sql[0]).toBe("SELECT `id`, `v` FROM `shop`.`t` ORDER BY `id` LIMIT 10");
  });
});
