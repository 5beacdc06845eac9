// agent/apply/applier.ts on a fake port (no database): a recording connection stands in for the replica. What is
// checked is what reaches the replica and in which order: a group of source transactions is one target transaction
// with the checkpoint as its last statement before COMMIT; an UPDATE that matched no row, or a failing statement,
// makes it replay statement by statement (careful); statements are packed into queries under the replica's packet
// limit; and the next batch is built ahead only while no snapshot blocks it.
import { describe, expect, it } from "vitest";
import { ApplyProgress, RowApplier, packQueries, type ApplierPort, type ApplyConn, type SnapshotView } from "../../agent/apply/applier.js";
import { TxnQueue } from "../../agent/apply/queue.js";
import { createLogger } from "../../agent/log.js";
import { Metrics } from "../../agent/ops/metrics.js";
import type { RowChange, Txn } from "../../agent/source/reader.js";
import type { Position } from "../../agent/source/positions.js";
import type { TableMeta } from "../../agent/tables.js";
import { ApplyError } from "../../agent/errors.js";

const meta = (table: string): TableMeta => ({
  db: "d",
  table,
  columns: ["id", "v"],
  writable: ["id", "v"],
  writableSet: new Set(["id", "v"]),
  types: new Map([
    ["id", "int"],
    ["v", "varchar"],
  ]),
  primaryKey: ["id"],
  hasSecondaryUnique: false,
});
const tables = new Map([
  ["t", meta("t")],
  ["child", meta("child")],
]);

let seq = 0;
function txn(...changes: RowChange[]): Txn {
  seq++;
  const rows = changes.reduce((a, c) => a + c.rows.length, 0);
  return { pos: { file: "binlog.000001", pos: seq * 100 }, ts: 1_700_000_000_000, readAt: 1_700_000_000_000, changes, rowCount: rows, bytes: 100 };
}
const ins = (table: string, ...rows: Record<string, unknown>[]): RowChange => ({ op: "insert", db: "d", table, rows });
const upd = (table: string, before: Record<string, unknown>, after: Record<string, unknown>): RowChange => ({ op: "update", db: "d", table, before: [before], rows: [after] });
const cpText = (pos: Position) => `CHECKPOINT ${pos.file}:${pos.pos}`;

/** A replica connection that records every query (a multi-statement query as one entry of its statements). */
class FakeReplica {
  queries: string[][] = [];
  /** affectedRows of a statement (default 1) */
  affected: (sql: string) => number = () => 1;
  /** throws for a query (whole multi-statement text) when it returns an error */
  fail: (sql: string, statements: string[]) => Error | null = () => null;
  maxPacket = 4 << 20;

  readonly conn = {
    query: async (q: string | { sql: string }, _params?: unknown) => {
      const sql = typeof q === "string" ? q : q.sql;
      if (sql.startsWith("SELECT @@max_allowed_packet")) return [[{ p: this.maxPacket }], undefined];
      const stmts = sql.split(";\n");
      this.queries.push(stmts);
      const e = this.fail(sql, stmts);
      if (e) throw e;
      const res = stmts.map((s) => ({ affectedRows: this.affected(s) }));
      return [stmts.length > 1 ? res : res[0], undefined];
    },
  } as unknown as ApplyConn;

  /** every statement sent, in order */
  get statements(): string[] {
    return this.queries.flat();
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

function applier(replica: FakeReplica, opts: { snapshot?: Partial<SnapshotView>; readerPaused?: boolean; maxRows?: number } = {}) {
  const queue = new TxnQueue<Txn>({ maxRows: opts.maxRows ?? 1000, maxBytes: 1 << 20, queueBytes: 1 << 20 });
  const progress = new ApplyProgress();
  const released: Txn[][] = [];
  const port: ApplierPort = {
    name: "r1",
    log: createLogger("silent"),
    metrics: new Metrics(),
    labels: { group: "g", replica: "r1" },
    heartbeatSeconds: 1,
    databases: ["d"],
    inScope: () => true,
    conn: () => replica.conn,
    schema: { peek: (_db, t) => tables.get(t), get: async (_db, t) => tables.get(t) ?? null },
    progress,
    cp: (pos) => cpText(pos),
    queue,
    release: (batch) => {
      released.push(batch);
      queue.release(batch);
    },
    readerPaused: () => opts.readerPaused ?? false,
    stopping: () => false,
    interrupted: () => undefined,
    nap: async () => undefined,
    quarantined: () => false,
    snapshot: { ...noSnapshot, ...opts.snapshot },
    special: async () => {
      throw new Error("no special transaction in these tests");
    },
  };
  return { rows: new RowApplier(port), queue, progress, released };
}

/** the queue's next batch, as the apply loop takes it */
function take(queue: TxnQueue<Txn>, ...txns: Txn[]): Txn[] {
  for (const t of txns) queue.push(t);
  return queue.take(null);
}

describe("RowApplier on a fake replica", () => {
  it("applies a group of source transactions as one target transaction whose last statement before COMMIT is the checkpoint of the last one", async () => {
    const replica = new FakeReplica();
    const { rows, queue, progress, released } = applier(replica);
    const batch = take(queue, txn(ins("t", { id: 1, v: "a" })), txn(ins("t", { id: 2, v: "b" })), txn(ins("child", { id: 3, v: "c" })));
    expect(batch).toHaveLength(3);
    await rows.apply(batch, null);
    expect(replica.queries).toHaveLength(1); // one round trip
    const s = replica.statements;
    expect(s[0]).toBe("START TRANSACTION");
    expect(s.at(-1)).toBe("COMMIT");
    expect(s.at(-2)).toBe(cpText(batch[2].pos));
    expect(s.filter((x) => x.startsWith("CHECKPOINT"))).toHaveLength(1);
    expect(s.filter((x) => /^INSERT INTO `d`\.`t`/.test(x)).join()).toMatch(/\(1,'a'\).*\(2,'b'\)/s);
    expect(s.some((x) => /^INSERT INTO `d`\.`child`/.test(x))).toBe(true);
    expect(progress.applied).toEqual(batch[2].pos);
    expect(progress.checkpoint).toEqual(batch[2].pos);
    expect([progress.txns, progress.rows]).toEqual([3, 3]);
    expect(released).toEqual([batch]);
    expect(rows.applying()).toBe(false);
  });

  it("an UPDATE located by its old key that matched no row: rolled back, then replayed statement by statement with its upsert", async () => {
    const replica = new FakeReplica();
    replica.affected = (sql) => (sql.startsWith("UPDATE") ? 0 : 1);
    const { rows, queue, progress } = applier(replica);
    const batch = take(queue, txn(ins("t", { id: 5, v: "x" })), txn(upd("t", { id: 1, v: "a" }, { id: 2, v: "b" })));
    await rows.apply(batch, null);
    const [first, ...rest] = replica.queries;
    // the first attempt leaves the transaction open (no COMMIT) to read the UPDATE's match count
    expect(first[0]).toBe("START TRANSACTION");
    expect(first.at(-1)).toBe(cpText(batch[1].pos));
    expect(first).not.toContain("COMMIT");
    const replay = rest.flat();
    expect(replay[0]).toBe("ROLLBACK");
    expect(replay[1]).toBe("START TRANSACTION");
    expect(replay[2]).toMatch(/^INSERT INTO `d`\.`t`/);
    expect(replay[3]).toMatch(/^UPDATE `d`\.`t`/);
    expect(replay[4]).toMatch(/^INSERT INTO `d`\.`t`.*\(2,'b'\).*ON DUPLICATE KEY UPDATE/s); // the fallback
    expect(replay.slice(5)).toEqual([cpText(batch[1].pos), "COMMIT"]);
    expect(rest.every((q) => q.length === 1)).toBe(true); // one statement per query in the replay
    expect(progress.checkpoint).toEqual(batch[1].pos);
  });

  it("a failing group is replayed statement by statement; the failing statement stops the replica naming its table, and the checkpoint does not move", async () => {
    const replica = new FakeReplica();
    const fk = Object.assign(new Error("Cannot add or update a child row: a foreign key constraint fails"), {
      errno: 1452,
      code: "ER_NO_REFERENCED_ROW_2",
      sqlMessage: "Cannot add or update a child row: a foreign key constraint fails",
    });
    replica.fail = (_sql, stmts) => (stmts.some((x) => x.startsWith("INSERT INTO `d`.`child`")) ? fk : null);
    const { rows, queue, progress } = applier(replica);
    const batch = take(queue, txn(ins("t", { id: 1, v: "a" })), txn(ins("child", { id: 9, v: "z" })));
    const err = await rows.apply(batch, null).then(
      () => null,
      (e) => e,
    );
    expect(err).toBeInstanceOf(ApplyError);
    expect(err.message).toMatch(/replica r1: applying to `d`\.`child` failed with ER_NO_REFERENCED_ROW_2 1452/);
    expect(err.table).toBe("d.child");
    const s = replica.statements;
    // the group, then its rollback, then the careful replay up to the failing statement, rolled back too
    expect(s.indexOf("ROLLBACK")).toBeGreaterThan(0);
    const replay = replica.queries.slice(2).flat();
    expect(replay[0]).toBe("START TRANSACTION");
    expect(replay[1]).toMatch(/^INSERT INTO `d`\.`t`/);
    expect(replay[2]).toMatch(/^INSERT INTO `d`\.`child`/);
    expect(replay.at(-1)).toBe("ROLLBACK");
    // the group's COMMIT went in the query that failed (the server stops at the failing statement); none after it
    expect(replica.queries[0].at(-1)).toBe("COMMIT");
    expect(replica.queries.slice(1).flat()).not.toContain("COMMIT");
    expect(progress.checkpoint).toBeNull();
    expect(progress.txns).toBe(0);
  });

  it("a group whose multi-statement query failed once is applied by the careful replay and committed with its checkpoint", async () => {
    const replica = new FakeReplica();
    let failed = false;
    replica.fail = (_sql, stmts) => {
      if (failed || stmts.length === 1) return null;
      failed = true;
      return Object.assign(new Error("Duplicate entry"), { errno: 1062, code: "ER_DUP_ENTRY", sqlMessage: "Duplicate entry" });
    };
    const { rows, queue, progress } = applier(replica);
    const batch = take(queue, txn(ins("t", { id: 1, v: "a" })), txn(ins("child", { id: 2, v: "b" })));
    await rows.apply(batch, null);
    const replay = replica.queries.slice(1).flat();
    expect(replay).toEqual(["ROLLBACK", "START TRANSACTION", expect.stringMatching(/^INSERT INTO `d`\.`t`/), expect.stringMatching(/^INSERT INTO `d`\.`child`/), cpText(batch[1].pos), "COMMIT"]);
    expect(progress.checkpoint).toEqual(batch[1].pos);
  });

  it("refuses a row above the replica's max_allowed_packet before sending anything, naming the setting and the fix", async () => {
    const replica = new FakeReplica();
    replica.maxPacket = 70_000;
    const { rows, queue, progress } = applier(replica);
    await rows.readMaxPacket(replica.conn);
    const batch = take(queue, txn(ins("t", { id: 1, v: "x".repeat(100_000) })));
    await expect(rows.apply(batch, null)).rejects.toThrow(/above the replica's max_allowed_packet of 70000 bytes\. Raise max_allowed_packet on the replica to at least 1M/);
    expect(replica.queries).toEqual([]);
    expect(progress.checkpoint).toBeNull();
  });

  it("builds the next batch ahead while one commits, unless the snapshot blocks it", async () => {
    for (const blocked of [false, true]) {
      const replica = new FakeReplica();
      const { rows, queue } = applier(replica, { readerPaused: true, maxRows: 1, snapshot: { blocksStreaming: () => blocked } });
      const t1 = txn(ins("t", { id: 1, v: "a" }));
      const t2 = txn(ins("t", { id: 2, v: "b" }));
      const batch = take(queue, t1, t2);
      expect(batch).toEqual([t1]);
      await rows.apply(batch, null);
      const ahead = rows.takeAhead();
      if (blocked) {
        expect(ahead).toBeNull();
        expect(queue.length).toBe(1);
      } else {
        expect(ahead?.batch).toEqual([t2]);
        expect((await ahead!.built).stmts.map((s) => s.sql).join()).toMatch(/\(2,'b'\)/);
        expect(queue.length).toBe(0);
        // committed after the first one, with its own checkpoint
        await rows.apply(ahead!.batch, ahead);
        expect(replica.statements.filter((x) => x.startsWith("CHECKPOINT"))).toEqual([cpText(t1.pos), cpText(t2.pos)]);
      }
    }
  });
});

describe("packQueries", () => {
  it("an abort of a transaction handed over in pieces is released through the port (a reader paused on the queue resumes), alone or after pieces", async () => {
    const replica = new FakeReplica();
    const { rows, queue, released } = applier(replica);
    // alone: the first thing of the stream (a shared-stream subscriber that left between pieces before applying one)
    const abort1 = { ...txn(), stream: "abort" as const };
    const b1 = take(queue, abort1);
    await rows.applyStreamed(b1[0]);
    expect(released).toEqual([[abort1]]);
    // after a piece applied into the open target transaction: rolled back, and released through the port too
    const part = { ...txn(ins("t", { id: 1, v: "a" })), stream: "part" as const };
    const abort2 = { ...txn(), stream: "abort" as const };
    const b2 = take(queue, part);
    queue.push(abort2);
    await rows.applyStreamed(b2[0]);
    expect(replica.statements.at(-1)).toBe("ROLLBACK");
    expect(released.slice(1)).toEqual([[part], [abort2]]);
    expect(queue.heldBytes).toBe(0);
  });

  it("packs statements into queries of at most the byte limit (2 bytes of separator each), in order", () => {
    const [a, b, c] = ["a".repeat(10), "b".repeat(10), "c".repeat(10)];
    expect(packQueries([a, b, c], 25)).toEqual([[a, b], [c]]);
    // at the boundary: two statements take 24 bytes
    expect(packQueries([a, b, c], 24)).toEqual([[a, b], [c]]);
    expect(packQueries([a, b, c], 23)).toEqual([[a], [b], [c]]);
    expect(packQueries([a, b, c], 36)).toEqual([[a, b, c]]);
    expect(packQueries([a, b, c], 10)).toEqual([[a], [b], [c]]); // above the limit: alone
  });

  it("counts bytes, not characters, for multi-byte text", () => {
    const e = "é".repeat(10); // 20 bytes
    expect(packQueries([e, e], 25)).toEqual([[e], [e]]);
    expect(packQueries([e, e], 44)).toEqual([[e, e]]);
  });
});
