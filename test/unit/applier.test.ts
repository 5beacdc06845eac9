// agent/apply/applier.ts on a fake port (no database): a recording connection stands in for the replica. What is
// checked is what reaches the replica and in which order: a group of source transactions is one target transaction
// with the checkpoint as its last statement before COMMIT; an UPDATE that matched no row, or a failing statement,
// makes it replay statement by statement (careful); statements are packed into queries under the replica's packet
// limit; and the next batch is built ahead only while no snapshot blocks it.
import { describe, expect, it } from "vitest";
import { ApplyProgress, RowApplier, disjoint, laneKeys, packQueries, type ApplierPort, type ApplyConn, type SideConn, type SnapshotView } from "../../agent/apply/applier.js";
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
  // known to have no foreign key on either side: its rows gather in lanes (sqlgen.ts laneTable), parallel apply's tables
  ["l", { ...meta("l"), foreignKeys: false, selfReferencing: false }],
  ["l2", { ...meta("l2"), foreignKeys: false, selfReferencing: false }],
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

function applier(replica: FakeReplica, opts: { snapshot?: Partial<SnapshotView>; readerPaused?: boolean; maxRows?: number; openSide?: () => Promise<SideConn>; queueBytes?: number } = {}) {
  const queue = new TxnQueue<Txn>({ maxRows: opts.maxRows ?? 1000, maxBytes: 1 << 20, queueBytes: opts.queueBytes ?? 1 << 20 });
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
    ...(opts.openSide ? { openSide: opts.openSide } : {}),
  };
  return { rows: new RowApplier(port), queue, progress, released, metrics: port.metrics };
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

/**
 * Parallel apply (applier.ts #parallel): replicas whose queries are logged in one order across connections, the
 * main one slow to answer, so that a batch run early overlaps the batch before it.
 */
/** the apply loop over what is queued: the first batch from the queue, then each batch built ahead */
async function drainQueue(a: { rows: RowApplier; queue: TxnQueue<Txn> }): Promise<void> {
  let batch = a.queue.take(null);
  let ahead = null;
  while (batch.length) {
    await a.rows.apply(batch, ahead);
    ahead = a.rows.takeAhead();
    batch = ahead ? ahead.batch : a.queue.take(null);
  }
}

describe("parallel apply on fake replica connections", () => {
  class Logged extends FakeReplica {
    destroyed = false;
    constructor(
      readonly name: string,
      readonly log: string[],
      readonly delayMs = 0,
    ) {
      super();
      const inner = this.conn.query;
      (this.conn as any).query = async (q: string | { sql: string }) => {
        const sql = typeof q === "string" ? q : q.sql;
        this.log.push(`${this.name} sent ${sql.split(";\n").join(" | ")}`);
        if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
        try {
          return await (inner as (q: unknown) => Promise<unknown>)(q);
        } finally {
          this.log.push(`${this.name} done ${sql.split(";\n")[0]}`);
        }
      };
    }
    get side(): SideConn {
      return Object.assign(this.conn, { destroy: () => void (this.destroyed = true) }) as unknown as SideConn;
    }
  }

  function setup(opts: { sideFail?: (sql: string) => Error | null; queueBytes?: number } = {}) {
    const log: string[] = [];
    const main = new Logged("main", log, 20);
    const sides: Logged[] = [];
    const a = applier(main, {
      readerPaused: true,
      maxRows: 2,
      // a single replica's share of the default apply.queueBytes
      queueBytes: opts.queueBytes ?? 16 << 20,
      openSide: async () => {
        const s = new Logged(`side${sides.length + 1}`, log);
        if (opts.sideFail) s.fail = (sql) => opts.sideFail!(sql);
        sides.push(s);
        return s.side;
      },
    });
    const parallel = async () => (await a.metrics.registry.getSingleMetric("datasync_replica_parallel_batches_total")!.get()).values.find((v) => v.labels.replica === "r1")?.value ?? 0;
    const drain = () => drainQueue(a);
    return { ...a, log, main, sides, parallel, drain };
  }
  const at = (log: string[], re: RegExp) => log.findIndex((l) => re.test(l));

  it("runs the next independent batch on a side connection while the current one commits, and commits it after, with the next checkpoint", async () => {
    const p = setup();
    const t1 = txn(ins("l", { id: 1, v: "a" }, { id: 2, v: "b" }));
    const t2 = txn(ins("l", { id: 3, v: "c" }, { id: 4, v: "d" }));
    for (const t of [t1, t2]) p.queue.push(t);
    await p.drain();
    const { log } = p;
    const mainCommit = at(log, /^main done START TRANSACTION/);
    const sideData = at(log, /^side1 sent START TRANSACTION \| INSERT INTO `d`\.`l` .*\(3,'c'\),\(4,'d'\)/);
    const sideCp = at(log, new RegExp(`^side1 sent ${cpText(t2.pos)} \\| COMMIT$`));
    expect(sideData).toBeGreaterThan(-1);
    // the second batch's rows reached the replica before the first batch's commit returned
    expect(sideData).toBeLessThan(mainCommit);
    // its checkpoint and commit only after it
    expect(sideCp).toBeGreaterThan(mainCommit);
    expect(p.main.statements.filter((x) => x.startsWith("CHECKPOINT"))).toEqual([cpText(t1.pos)]);
    expect(p.main.statements.join()).not.toMatch(/\(3,'c'\)/);
    expect(p.progress.checkpoint).toEqual(t2.pos);
    expect([p.progress.txns, p.progress.rows]).toEqual([2, 4]);
    expect(await p.parallel()).toBe(1);
  });

  it("alternates two side connections, each batch committed in source order", async () => {
    const p = setup();
    const ts = [1, 3, 5, 7, 9].map((id) => txn(ins("l", { id, v: "x" }, { id: id + 1, v: "y" })));
    for (const t of ts) p.queue.push(t);
    await p.drain();
    const cps = p.log.filter((l) => / sent .*CHECKPOINT/.test(l)).map((l) => /CHECKPOINT \S+/.exec(l)![0]);
    expect(cps).toEqual(ts.map((t) => cpText(t.pos)));
    expect(p.sides.map((s) => s.name)).toEqual(["side1", "side2"]);
    expect(await p.parallel()).toBe(4);
    expect(p.progress.checkpoint).toEqual(ts[4].pos);
  });

  it("keeps a batch that shares a key with the current one (or holds a non-lane statement) for its turn on the session's connection", async () => {
    for (const second of [
      txn(ins("l", { id: 2, v: "again" }), ins("l2", { id: 9, v: "z" })), // key 2 of l is in both
      txn(upd("l", { id: 5, v: "a" }, { id: 6, v: "b" })), // a key change: an UPDATE with its fallback
      txn(ins("t", { id: 7, v: "c" })), // a table whose foreign keys are not known
    ]) {
      const p = setup();
      const t1 = txn(ins("l", { id: 1, v: "a" }, { id: 2, v: "b" }));
      p.queue.push(t1);
      p.queue.push(second);
      await p.drain();
      expect(p.sides).toEqual([]);
      expect(p.main.statements.filter((x) => x.startsWith("CHECKPOINT"))).toEqual([cpText(t1.pos), cpText(second.pos)]);
      expect(await p.parallel()).toBe(0);
    }
  });

  it("a batch that failed early is rolled back and applied again in its turn on the session's connection", async () => {
    const p = setup({ sideFail: (sql) => (/INSERT/.test(sql) ? Object.assign(new Error("Data too long"), { errno: 1406 }) : null) });
    const t1 = txn(ins("l", { id: 1, v: "a" }, { id: 2, v: "b" }));
    const t2 = txn(ins("l", { id: 3, v: "c" }, { id: 4, v: "d" }));
    for (const t of [t1, t2]) p.queue.push(t);
    await p.drain();
    expect(p.sides[0].statements).toContain("ROLLBACK");
    expect(p.sides[0].statements.some((x) => x.startsWith("CHECKPOINT") || x === "COMMIT")).toBe(false);
    expect(p.main.statements.filter((x) => x.startsWith("CHECKPOINT"))).toEqual([cpText(t1.pos), cpText(t2.pos)]);
    expect(p.main.statements.join()).toMatch(/\(3,'c'\),\(4,'d'\)/);
    expect(p.progress.checkpoint).toEqual(t2.pos);
    expect(await p.parallel()).toBe(0);
  });

  it("a lock wait or deadlock of a batch run early turns parallel apply off; the batches still all commit in order", async () => {
    const p = setup({ sideFail: (sql) => (/INSERT/.test(sql) ? Object.assign(new Error("Deadlock found"), { errno: 1213 }) : null) });
    const ts = [1, 3, 5, 7].map((id) => txn(ins("l", { id, v: "x" }, { id: id + 1, v: "y" })));
    for (const t of ts) p.queue.push(t);
    await p.drain();
    // the batches built ahead before the deadlock was known were tried early (the second and the third); the last
    // one, built after, was not
    expect(p.sides.map((x) => x.name)).toEqual(["side1", "side2"]);
    expect(p.sides.flatMap((x) => x.statements).join()).not.toMatch(/\(7,'x'\)/);
    expect(p.main.statements.filter((x) => x.startsWith("CHECKPOINT"))).toEqual(ts.map((t) => cpText(t.pos)));
  });

  it("when the current batch fails, the batch run early is never committed, and the session's reset drops its connection", async () => {
    const p = setup();
    p.main.fail = (sql) => (/CHECKPOINT/.test(sql) ? Object.assign(new Error("connection lost"), { code: "PROTOCOL_CONNECTION_LOST", fatal: true }) : null);
    const t1 = txn(ins("l", { id: 1, v: "a" }, { id: 2, v: "b" }));
    const t2 = txn(ins("l", { id: 3, v: "c" }, { id: 4, v: "d" }));
    for (const t of [t1, t2]) p.queue.push(t);
    await expect(p.drain()).rejects.toThrow();
    // the early batch ran (its data is in an open transaction) but nothing committed it
    await new Promise((r) => setTimeout(r, 30));
    expect(p.sides[0].statements.join()).toMatch(/\(3,'c'\)/);
    expect(p.sides[0].statements.some((x) => x.startsWith("CHECKPOINT") || x === "COMMIT")).toBe(false);
    p.rows.reset();
    expect(p.sides[0].destroyed).toBe(true);
    expect(p.progress.checkpoint).toBeNull();
  });

  it("a side connection that cannot be opened: the batch runs in its turn, and parallel apply stops trying", async () => {
    const log: string[] = [];
    const main = new Logged("main", log, 5);
    let opens = 0;
    const a = applier(main, {
      readerPaused: true,
      maxRows: 2,
      queueBytes: 16 << 20,
      openSide: async () => {
        opens++;
        throw Object.assign(new Error("Too many connections"), { errno: 1040 });
      },
    });
    const ts = [1, 3, 5, 7].map((id) => txn(ins("l", { id, v: "x" }, { id: id + 1, v: "y" })));
    for (const t of ts) a.queue.push(t);
    await drainQueue(a);
    expect(opens).toBe(1);
    expect(main.statements.filter((x) => x.startsWith("CHECKPOINT"))).toEqual(ts.map((t) => cpText(t.pos)));
  });

  it("keeps a batch for its turn when the two batches' statements exceed half of the replica's queue share (memory)", async () => {
    const p = setup(); // the queue's share is 16 MiB
    // 4.4 MB of statements a batch (two tables, each statement under the replica's 4 MiB max_allowed_packet)
    const big = "x".repeat(2_200_000);
    const t1 = txn(ins("l", { id: 1, v: big }), ins("l2", { id: 2, v: big }));
    const t2 = txn(ins("l", { id: 3, v: big }), ins("l2", { id: 4, v: big }));
    for (const t of [t1, t2]) p.queue.push(t);
    await p.drain();
    expect(p.sides).toEqual([]);
    expect(p.main.statements.filter((x) => x.startsWith("CHECKPOINT"))).toEqual([cpText(t1.pos), cpText(t2.pos)]);
  });

  it("a replica whose share of apply.queueBytes is under 8 MiB (fan-out) keeps one connection", async () => {
    const p = setup({ queueBytes: 16 << 20 >> 2 }); // 16 MiB among 4 replicas
    const t1 = txn(ins("l", { id: 1, v: "a" }, { id: 2, v: "b" }));
    const t2 = txn(ins("l", { id: 3, v: "c" }, { id: 4, v: "d" }));
    for (const t of [t1, t2]) p.queue.push(t);
    await p.drain();
    expect(p.sides).toEqual([]);
    expect(p.main.statements.filter((x) => x.startsWith("CHECKPOINT"))).toEqual([cpText(t1.pos), cpText(t2.pos)]);
  });

  it("laneKeys and disjoint: every row's key, before and after images, per table", () => {
    const schema = { peek: (_db: string, t: string) => tables.get(t) };
    const k1 = laneKeys([{ sql: "", table: "d.l", rows: 1, lane: true }], [txn(ins("l", { id: 1, v: "a" }))], schema)!;
    const k2 = laneKeys([{ sql: "", table: "d.l", rows: 1, lane: true }], [txn(upd("l", { id: 1, v: "a" }, { id: 1, v: "b" }))], schema)!;
    const k3 = laneKeys([{ sql: "", table: "d.l2", rows: 1, lane: true }], [txn(ins("l2", { id: 1, v: "a" }))], schema)!;
    expect(disjoint(k1, k2)).toBe(false);
    expect(disjoint(k1, k3)).toBe(true);
    expect(laneKeys([{ sql: "", table: "d.l", rows: 1 }], [txn(ins("l", { id: 1, v: "a" }))], schema)).toBeNull();
    expect(laneKeys([{ sql: "", table: "d.t", rows: 1, lane: true }], [txn(ins("t", { id: 1, v: "a" }))], schema)).toBeNull();
  });
});
