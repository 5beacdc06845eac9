// Building once for fan-out (agent/apply/shared-builds.ts, RowApplier's use of it) on fake replicas: a second replica
// whose tables have the same shape takes the statements the first one built for the same source transaction (the
// very objects, frozen), one whose table differs in any field StatementBuilder reads builds its own, what depends on
// one replica's state (quarantine, the snapshot) is never shared, and the cache stays bounded.
import { describe, expect, it } from "vitest";
import { ApplyProgress, RowApplier, type ApplierPort, type ApplyConn, type SnapshotView } from "../../agent/apply/applier.js";
import { TxnQueue } from "../../agent/apply/queue.js";
import { SharedBuilds, shapeSignature, txnIdentity } from "../../agent/apply/shared-builds.js";
import { StatementBuilder } from "../../agent/apply/sqlgen.js";
import { createLogger } from "../../agent/log.js";
import { Metrics } from "../../agent/ops/metrics.js";
import type { RowChange, Txn } from "../../agent/source/reader.js";
import type { TableMeta } from "../../agent/tables.js";

const meta = (over: Partial<TableMeta> = {}): TableMeta => ({
  db: "d",
  table: "t",
  columns: ["id", "v"],
  writable: ["id", "v"],
  writableSet: new Set(["id", "v"]),
  types: new Map([
    ["id", "int"],
    ["v", "varchar"],
  ]),
  primaryKey: ["id"],
  hasSecondaryUnique: false,
  foreignKeys: false,
  ...over,
});

/** the same table with an extra column on the replica */
const wider = (): TableMeta =>
  meta({
    columns: ["id", "v", "extra"],
    writable: ["id", "v", "extra"],
    writableSet: new Set(["id", "v", "extra"]),
    types: new Map([
      ["id", "int"],
      ["v", "varchar"],
      ["extra", "int"],
    ]),
  });

let seq = 0;
function txn(...changes: RowChange[]): Txn {
  seq++;
  const rows = changes.reduce((a, c) => a + c.rows.length, 0);
  return { pos: { file: "binlog.000001", pos: seq * 100, gtid: `0-1-${seq}` }, ts: 1_700_000_000_000, readAt: 1_700_000_000_000, changes, rowCount: rows, bytes: 100 };
}
const ins = (...ids: number[]): RowChange => ({ op: "insert", db: "d", table: "t", rows: ids.map((id) => ({ id, v: `v${id}` })) });
const upd = (id: number, v: string): RowChange => ({ op: "update", db: "d", table: "t", before: [{ id, v: "old" }], rows: [{ id, v }] });
/** the copy a replica gets from its own reader, or its own shallow copy from the shared stream: equal, not the same objects */
const copy = (t: Txn): Txn => structuredClone(t);

class FakeReplica {
  statements: string[] = [];
  readonly conn = {
    query: async (q: string | { sql: string }) => {
      const sql = typeof q === "string" ? q : q.sql;
      if (sql.startsWith("SELECT @@max_allowed_packet")) return [[{ p: 4 << 20 }], undefined];
      const stmts = sql.split(";\n");
      this.statements.push(...stmts);
      const res = stmts.map(() => ({ affectedRows: 1 }));
      return [stmts.length > 1 ? res : res[0], undefined];
    },
  } as unknown as ApplyConn;
  /** the row statements sent (no transaction control, no checkpoint) */
  get rows(): string[] {
    return this.statements.filter((s) => /^(INSERT|UPDATE|DELETE)/.test(s));
  }
}

const noSnapshot: SnapshotView = {
  blocksStreaming: () => false,
  skips: () => false,
  copying: () => false,
  tombstone: () => undefined,
  relaxing: () => false,
  relaxed: () => false,
  passed: () => undefined,
};

function replica(name: string, t: TableMeta, builds: SharedBuilds | null, opts: { snapshot?: Partial<SnapshotView>; quarantined?: boolean; metrics?: Metrics } = {}) {
  const fake = new FakeReplica();
  const queue = new TxnQueue<Txn>({ maxRows: 100_000, maxBytes: 1 << 30, queueBytes: 1 << 30 });
  const metrics = opts.metrics ?? new Metrics();
  const port: ApplierPort = {
    name,
    log: createLogger("silent"),
    metrics,
    labels: { group: "g", replica: name },
    heartbeatSeconds: 1,
    databases: ["d"],
    inScope: () => true,
    conn: () => fake.conn,
    schema: { peek: () => t, get: async () => t },
    progress: new ApplyProgress(),
    cp: (pos) => `CHECKPOINT ${pos.pos}`,
    queue,
    release: (batch) => queue.release(batch),
    readerPaused: () => false,
    stopping: () => false,
    interrupted: () => undefined,
    nap: async () => undefined,
    quarantined: () => opts.quarantined ?? false,
    snapshot: { ...noSnapshot, ...opts.snapshot },
    special: async () => {
      throw new Error("no special transaction here");
    },
    builds,
  };
  const rows = new RowApplier(port);
  /** the batch as the apply loop takes it, applied; the statements it sent */
  const apply = async (...txns: Txn[]): Promise<string[]> => {
    const before = fake.rows.length;
    for (const x of txns) queue.push(x);
    await rows.apply(queue.take(null), null);
    return fake.rows.slice(before);
  };
  /** a large transaction handed over in pieces (the first, then the others queued as the reader hands them over) */
  const pieces = async (...ps: Txn[]): Promise<string[]> => {
    const before = fake.rows.length;
    for (const x of ps.slice(1)) queue.push(x);
    await rows.applyStreamed(ps[0]);
    return fake.rows.slice(before);
  };
  const reused = async () => (await metrics.registry.getSingleMetric("datasync_replica_reused_transactions_total")!.get()).values.find((v) => v.labels.replica === name)?.value ?? 0;
  return { apply, pieces, reused, fake };
}

/** the statements a replica of this shape builds alone (no sharing) */
async function alone(t: TableMeta, ...txns: Txn[]): Promise<string[]> {
  return replica("alone", t, null).apply(...txns.map(copy));
}

describe("building once for fan-out", () => {
  it("a second replica with the same table shapes takes the statements the first built for the same source transaction", async () => {
    const builds = new SharedBuilds({ replicas: 2, minRows: 1 });
    const r1 = replica("r1", meta(), builds);
    const r2 = replica("r2", meta(), builds); // its own TableMeta object, loaded from its own server: same shape
    const t1 = txn(ins(1, 2, 3), upd(9, "x"));
    const t2 = txn(ins(4, 5));
    const sent1 = await r1.apply(t1, t2);
    expect(builds.size.entries).toBe(2);
    const sent2 = await r2.apply(copy(t1), copy(t2));
    expect(sent2).toEqual(sent1);
    // each source transaction's statements as built alone (large transactions are not merged with their neighbours)
    expect(sent2).toEqual([...(await alone(meta(), t1)), ...(await alone(meta(), t2))]);
    expect([await r1.reused(), await r2.reused()]).toEqual([0, 2]);
    // both replicas passed both transactions: nothing is kept
    expect(builds.size).toEqual({ entries: 0, bytes: 0, transactions: 0 });
  });

  it("hands over the very statement objects, frozen (a consumer cannot change what another replica sends)", async () => {
    const builds = new SharedBuilds({ replicas: 3, minRows: 1 });
    const t = txn(ins(1, 2));
    const key = txnIdentity(t);
    const m = meta();
    const shapes = `${builds.shapeId(m)},`;
    const b = new StatementBuilder();
    b.add(t.changes[0], m, "here");
    const put = builds.put(key, shapes, "r1", b.finish(), b.rows);
    const got = builds.take(txnIdentity(copy(t)), `${builds.shapeId(meta())},`, "r2");
    expect(got).toBe(put);
    expect(Object.isFrozen(got!.stmts)).toBe(true);
    expect(() => {
      (got!.stmts[0] as { relaxFk?: boolean }).relaxFk = true;
    }).toThrow(TypeError);
  });

  it("a replica whose table has an extra column, or another key, builds its own statements", async () => {
    const builds = new SharedBuilds({ replicas: 3, minRows: 1 });
    const r1 = replica("r1", meta(), builds);
    const r2 = replica("r2", wider(), builds);
    const r3 = replica("r3", meta({ hasSecondaryUnique: true }), builds);
    const t = txn(upd(7, "new"), ins(8));
    const sent1 = await r1.apply(t);
    const sent2 = await r2.apply(copy(t));
    const sent3 = await r3.apply(copy(t));
    expect([await r1.reused(), await r2.reused(), await r3.reused()]).toEqual([0, 0, 0]);
    expect(sent2).toEqual(await alone(wider(), t));
    expect(sent3).toEqual(await alone(meta({ hasSecondaryUnique: true }), t));
    // a secondary unique key: the update is located by its old key, not an upsert (r1's statement would be wrong there)
    expect(sent1[0]).toMatch(/^INSERT INTO `d`\.`t` \(`id`, `v`\) VALUES \(7,'new'\)/);
    expect(sent3[0]).toMatch(/^UPDATE `d`\.`t` SET `id` = 7, `v` = 'new' WHERE `id` <=> 7/);
  });

  it("pieces of a large transaction are shared by the binlog range they hold, never by their order alone", async () => {
    const start = { file: "binlog.000002", pos: 100, gtid: "0-1-7" };
    const commit = { file: "binlog.000002", pos: 1300, gtid: "0-1-8" };
    const ts = 1_700_000_100_000;
    const part = (cut: number, ...ids: number[]): Txn => ({ pos: start, ts, readAt: 0, changes: [ins(...ids)], rowCount: ids.length, bytes: 100, stream: "part", cut });
    const last = (...ids: number[]): Txn => ({ pos: commit, ts, readAt: 0, changes: [ins(...ids)], rowCount: ids.length, bytes: 100, stream: "last" });
    const builds = new SharedBuilds({ replicas: 3, minRows: 1 });
    const r1 = replica("r1", meta(), builds);
    const r2 = replica("r2", meta(), builds);
    const r3 = replica("r3", meta(), builds);
    const a = [part(500, 1, 2), part(900, 3, 4), last(5, 6)];
    const sent1 = await r1.pieces(...a.map(copy)); // (the applier empties a piece's changes once built)
    expect(await r2.pieces(...a.map(copy))).toEqual(sent1);
    expect(await r2.reused()).toBe(3);
    // the same transaction cut elsewhere (a reader that could not hand a piece over at 500): its second piece has
    // the same position, order, table and row count as r1's second piece, and other rows
    const sent3 = await r3.pieces(part(700, 1, 2, 3), part(1100, 4, 5), last(6));
    expect(sent3[1]).toMatch(/VALUES \(4,'v4'\),\(5,'v5'\)/);
    expect(await r3.reused()).toBe(0);
    // a piece without its cut is built alone, and so is the next (it starts where that one ended); the last one's range is known again
    const b4 = new SharedBuilds({ replicas: 2, minRows: 1 });
    const { cut: _cut, ...nocut } = copy(a[0]);
    await replica("r4", meta(), b4).pieces(nocut, ...a.slice(1).map(copy));
    expect(b4.size.entries).toBe(1);
  });

  it("rows decoded with a replica's own schema (a table map without column names) are never shared", async () => {
    // Each replica decodes such a table map with its own columns (ReaderOptions.tableInfo): a latin1 column on r1
    // and a utf8mb4 one on r2 give the same bytes other strings, under one source position and change list.
    const builds = new SharedBuilds({ replicas: 2, minRows: 1 });
    const r1 = replica("r1", meta(), builds);
    const r2 = replica("r2", meta(), builds);
    const base = txn(ins(1));
    const asR1: Txn = { ...copy(base), ownSchema: true, changes: [{ op: "insert", db: "d", table: "t", rows: [{ id: 1, v: "cafÃ©" }] }] };
    const asR2: Txn = { ...copy(base), ownSchema: true, changes: [{ op: "insert", db: "d", table: "t", rows: [{ id: 1, v: "café" }] }] };
    expect(txnIdentity(asR1)).toBe(txnIdentity(asR2));
    await r1.apply(asR1);
    const sent2 = await r2.apply(asR2);
    expect(sent2[0]).toContain("'café'");
    expect(await r2.reused()).toBe(0);
    expect(builds.size.entries).toBe(0);
  });

  it("the shape signature changes with every field of TableMeta", () => {
    const base = meta({ selfReferencing: false, sequence: false, versioning: { start: "s", end: "e", trx: false } });
    const sig = shapeSignature(base);
    expect(shapeSignature(meta({ selfReferencing: false, sequence: false, versioning: { start: "s", end: "e", trx: false } }))).toBe(sig);
    const variants: Partial<TableMeta>[] = [
      { db: "d2" },
      { table: "t2" },
      { columns: ["id", "v", "g"] },
      { writable: ["v", "id"] },
      { writableSet: new Set(["id"]) },
      { types: new Map([["id", "bigint"], ["v", "varchar"]]) },
      { primaryKey: ["id", "v"] },
      { hasSecondaryUnique: true },
      { selfReferencing: true },
      { foreignKeys: true },
      { sequence: true },
      { versioning: { start: "s", end: "e", trx: true } },
    ];
    // every field of the interface is varied here (a field added to TableMeta must be added above)
    expect(new Set(variants.flatMap((v) => Object.keys(v)))).toEqual(new Set(Object.keys(base)));
    for (const v of variants) expect(shapeSignature({ ...base, ...v }), JSON.stringify(Object.keys(v))).not.toBe(sig);
  });

  it("the same position with other changes (another scope, a RESET MASTER's reused position) is another transaction", () => {
    const t = txn(ins(1, 2));
    expect(txnIdentity(copy(t))).toBe(txnIdentity(t));
    expect(txnIdentity({ ...t, changes: [ins(1)], rowCount: 1 })).not.toBe(txnIdentity(t));
    expect(txnIdentity({ ...t, changes: [{ ...ins(1, 2), table: "u" }] })).not.toBe(txnIdentity(t));
    expect(txnIdentity({ ...t, ts: t.ts + 1000 })).not.toBe(txnIdentity(t));
    expect(txnIdentity({ ...t, changes: [{ ...ins(1, 2), noFkChecks: true }] })).not.toBe(txnIdentity(t));
  });

  it("builds as before where the build depends on the replica: a snapshot in progress, a quarantined table, small transactions", async () => {
    for (const opts of [{ snapshot: { blocksStreaming: () => true } }, { snapshot: { relaxing: () => true, relaxed: () => true } }, { quarantined: true }]) {
      const builds = new SharedBuilds({ replicas: 2, minRows: 1 });
      const r1 = replica("r1", meta(), builds, opts);
      await r1.apply(txn(ins(1, 2)));
      expect(builds.size.entries, JSON.stringify(Object.keys(opts))).toBe(0);
    }
    // below minRows: the batch's rows merge as before (one statement for two source transactions), nothing kept
    const builds = new SharedBuilds({ replicas: 2, minRows: 3 });
    const t1 = txn(ins(1, 2));
    const t2 = txn(ins(3, 4));
    const sent = await replica("r1", meta(), builds).apply(t1, t2);
    expect(sent).toHaveLength(1);
    expect(sent).toEqual(await alone(meta(), t1, t2));
    expect(builds.size.entries).toBe(0);
  });

  it("a snapshot's relaxed table gets copies with foreign key checks off, the shared statements stay as built", async () => {
    const builds = new SharedBuilds({ replicas: 2, minRows: 1 });
    const t = txn(ins(1, 2));
    await replica("r1", meta(), builds).apply(t);
    const kept = builds.take(txnIdentity(t), `${builds.shapeId(meta())},`, "peek")!;
    // r2 relaxes (no sharing while it does): its statements are its own, r1's kept ones unchanged
    const r2 = replica("r2", meta(), builds, { snapshot: { relaxing: () => true, relaxed: () => true } });
    const sent = await r2.apply(copy(t));
    expect(sent).toEqual(kept.stmts.map((s) => s.sql));
    expect(r2.fake.statements.some((s) => s === "SET SESSION foreign_key_checks = 0")).toBe(true);
    expect(kept.stmts.every((s) => !s.relaxFk)).toBe(true);
  });

  it("stays bounded: a replica far behind (or down) never holds more than maxEntries/maxBytes, the oldest go first", async () => {
    const builds = new SharedBuilds({ replicas: 3, minRows: 1, maxEntries: 4 });
    const r1 = replica("r1", meta(), builds);
    const ts = Array.from({ length: 10 }, (_, i) => txn(ins(i * 10 + 1, i * 10 + 2)));
    for (const t of ts) await r1.apply(t);
    expect(builds.size.entries).toBe(4);
    // r2 comes later: the first six are gone (it builds them for itself, pushing nothing out), the last four are taken
    const r2 = replica("r2", meta(), builds);
    for (const t of ts.slice(0, 6)) await r2.apply(copy(t));
    expect([await r2.reused(), builds.size.entries]).toEqual([0, 4]);
    for (const t of ts.slice(6)) await r2.apply(copy(t));
    expect(await r2.reused()).toBe(4);
    const small = new SharedBuilds({ replicas: 3, minRows: 1, maxBytes: 2000 });
    const r3 = replica("r3", meta(), small);
    for (const t of ts) await r3.apply(t);
    expect(small.size.bytes).toBeLessThanOrEqual(2000);
    expect(small.size.entries).toBeGreaterThan(0);
  });

  it("a build that fails keeps nothing: each replica reports its own error, naming itself", async () => {
    const builds = new SharedBuilds({ replicas: 2, minRows: 1 });
    const bad = txn({ op: "insert", db: "d", table: "t", rows: [{ id: 1, v: "a", gone: 1 }] });
    await expect(replica("r1", meta(), builds).apply(bad)).rejects.toThrow(/replica r1, source position .*column `gone`/);
    expect(builds.size.entries).toBe(0);
    await expect(replica("r2", meta(), builds).apply(copy(bad))).rejects.toThrow(/replica r2, source position .*column `gone`/);
  });
});
