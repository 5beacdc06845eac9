// A concurrent random writer for tests: multi-statement transactions with inserts, updates, deletes,
// key changes (cascading through foreign keys), rollbacks, and DDL mid-stream. Every committed change
// to `shop.ledger` is also counted on the source by a trigger, so replicas can prove exactly-once.
import type { Connection } from "mysql2/promise";
import type { TestServer } from "./servers.js";
import { seq } from "./sql.js";

export const SCHEMA_SQL = [
  "CREATE DATABASE IF NOT EXISTS shop",
  "CREATE DATABASE IF NOT EXISTS audit",
  `CREATE TABLE shop.customers (id INT NOT NULL PRIMARY KEY, name VARCHAR(64) NOT NULL, email VARCHAR(128) NULL, UNIQUE KEY uq_email (email)) ENGINE=InnoDB`,
  `CREATE TABLE shop.orders (id INT NOT NULL PRIMARY KEY, customer_id INT NOT NULL, total DECIMAL(12,2) NOT NULL, note TEXT, created DATETIME(6) NOT NULL,
     CONSTRAINT fk_orders_customer FOREIGN KEY (customer_id) REFERENCES shop.customers (id) ON DELETE CASCADE ON UPDATE CASCADE) ENGINE=InnoDB`,
  `CREATE TABLE shop.order_lines (order_id INT NOT NULL, line INT NOT NULL, sku VARBINARY(16) NOT NULL, qty INT NOT NULL, PRIMARY KEY (order_id, line),
     CONSTRAINT fk_lines_order FOREIGN KEY (order_id) REFERENCES shop.orders (id) ON DELETE CASCADE ON UPDATE CASCADE) ENGINE=InnoDB`,
  `CREATE TABLE shop.ledger (id INT NOT NULL PRIMARY KEY, version INT NOT NULL, payload VARCHAR(64)) ENGINE=InnoDB`,
  `CREATE TABLE audit.applied (seq BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, ledger_id INT NOT NULL, version INT NOT NULL, op CHAR(1) NOT NULL) ENGINE=InnoDB`,
];

/** Triggers that record every applied change of shop.ledger into audit.applied (not a synced schema). */
export const AUDIT_TRIGGERS = [
  "CREATE TRIGGER shop.ledger_ai AFTER INSERT ON shop.ledger FOR EACH ROW INSERT INTO audit.applied (ledger_id, version, op) VALUES (NEW.id, NEW.version, 'i')",
  "CREATE TRIGGER shop.ledger_au AFTER UPDATE ON shop.ledger FOR EACH ROW INSERT INTO audit.applied (ledger_id, version, op) VALUES (NEW.id, NEW.version, 'u')",
];

export interface LoadStats {
  committed: number;
  rolledBack: number;
  ddl: number;
  errors: number;
}

function rnd(n: number): number {
  return Math.floor(Math.random() * n);
}

export class Writer {
  readonly stats: LoadStats = { committed: 0, rolledBack: 0, ddl: 0, errors: 0 };
  #src: TestServer;
  #stop = false;
  #done: Promise<void> | null = null;
  #nextCustomer = 1;
  #nextOrder = 1;
  #nextLedger = 1;
  #ddlEveryMs: number;
  #lastErr: unknown = null;

  #idBase: number;

  constructor(src: TestServer, opts: { ddlEveryMs?: number; idBase?: number } = {}) {
    this.#src = src;
    this.#ddlEveryMs = opts.ddlEveryMs ?? 0;
    this.#idBase = opts.idBase ?? 0;
  }

  get lastError(): unknown {
    return this.#lastErr;
  }

  start(connections = 2): void {
    const workers: Promise<void>[] = [];
    for (let i = 0; i < connections; i++) workers.push(this.#worker(i, connections));
    if (this.#ddlEveryMs > 0) workers.push(this.#ddlWorker());
    this.#done = Promise.all(workers).then(() => undefined);
  }

  async stop(): Promise<LoadStats> {
    this.#stop = true;
    await this.#done;
    return this.stats;
  }

  async #worker(idx: number, of: number): Promise<void> {
    let c: Connection | null = null;
    while (!this.#stop) {
      try {
        c ??= await this.#src.connect();
        await this.#txn(c, idx, of);
      } catch (e: any) {
        this.stats.errors++;
        this.#lastErr = e;
        try {
          await c?.query("ROLLBACK");
        } catch {
          c?.destroy();
          c = null;
          await new Promise((r) => setTimeout(r, 200));
        }
      }
    }
    await c?.end().catch(() => undefined);
  }

  // ids are partitioned by worker so concurrent workers do not deadlock on the same keys
  #id(counter: "c" | "o" | "l", idx: number, of: number): number {
    const n = counter === "c" ? this.#nextCustomer++ : counter === "o" ? this.#nextOrder++ : this.#nextLedger++;
    return this.#idBase + n * of + idx;
  }

  async #txn(c: Connection, idx: number, of: number): Promise<void> {
    await c.query("START TRANSACTION");
    const kind = rnd(10);
    if (kind < 4) {
      const cid = this.#id("c", idx, of);
      await c.query("INSERT INTO shop.customers (id, name, email) VALUES (?, ?, ?)", [cid, `cust ${cid} ✓`, rnd(3) === 0 ? null : `c${cid}@example.com`]);
      const oid = this.#id("o", idx, of);
      await c.query("INSERT INTO shop.orders (id, customer_id, total, note, created) VALUES (?, ?, ?, ?, NOW(6))", [oid, cid, (rnd(100000) / 100).toFixed(2), rnd(2) ? "note 😀" : null]);
      const lines = 1 + rnd(4);
      const vals = Array.from({ length: lines }, (_, l) => [oid, l + 1, Buffer.from([rnd(256), rnd(256), 0, 39]), 1 + rnd(5)]);
      await c.query("INSERT INTO shop.order_lines (order_id, line, sku, qty) VALUES ?", [vals]);
    } else if (kind < 6) {
      await c.query("UPDATE shop.orders SET total = total + 1, note = CONCAT(COALESCE(note, ''), '+') WHERE id % ? = ? ORDER BY RAND() LIMIT 3", [of, idx]);
      await c.query("UPDATE shop.order_lines SET qty = qty + 1 WHERE order_id % ? = ? ORDER BY RAND() LIMIT 2", [of, idx]);
    } else if (kind < 7) {
      // key change on a parent: cascades to orders and lines through the foreign keys
      const [rows] = await c.query<any[]>("SELECT id FROM shop.customers WHERE id % ? = ? ORDER BY RAND() LIMIT 1", [of, idx]);
      if (rows.length) await c.query("UPDATE shop.customers SET id = ? WHERE id = ?", [this.#id("c", idx, of), rows[0].id]);
    } else if (kind < 8) {
      // delete a parent: cascades on the source without row events for the children
      await c.query("DELETE FROM shop.customers WHERE id % ? = ? ORDER BY RAND() LIMIT 1", [of, idx]);
      await c.query("DELETE FROM shop.order_lines WHERE order_id % ? = ? AND line > 2 LIMIT 2", [of, idx]);
    } else {
      // a rollback: nothing of it may reach a replica
      await c.query("INSERT INTO shop.customers (id, name) VALUES (?, 'rolled back')", [this.#id("c", idx, of)]);
      if (rnd(2)) {
        await c.query("ROLLBACK");
        this.stats.rolledBack++;
        return;
      }
    }
    // every committed transaction touches the ledger: one new row, one version bump
    const lid = this.#id("l", idx, of);
    await c.query("INSERT INTO shop.ledger (id, version, payload) VALUES (?, 1, ?)", [lid, `tx ${lid}`]);
    await c.query("UPDATE shop.ledger SET version = version + 1 WHERE id % ? = ? ORDER BY RAND() LIMIT 1", [of, idx]);
    await c.query("COMMIT");
    this.stats.committed++;
  }

  async #ddlWorker(): Promise<void> {
    let n = 0;
    while (!this.#stop) {
      await new Promise((r) => setTimeout(r, this.#ddlEveryMs));
      if (this.#stop) break;
      n++;
      const stmts = [
        `ALTER TABLE shop.orders ADD COLUMN extra_${n} INT NOT NULL DEFAULT ${n}`,
        `CREATE INDEX ix_total_${n} ON shop.orders (total)`,
        `CREATE TABLE shop.side_${n} (id INT PRIMARY KEY, v VARCHAR(10))`,
        `INSERT INTO shop.side_${n} VALUES (1, 'a'), (2, 'b')`,
        `DROP INDEX ix_total_${n} ON shop.orders`,
      ];
      for (const s of stmts) {
        try {
          await this.#src.query(s);
          this.stats.ddl++;
        } catch (e) {
          this.stats.errors++;
          this.#lastErr = e;
        }
      }
    }
  }
}

/** Fill the load schema with `n` customers, each with one order of two lines (fast, server-side). */
export async function prefill(src: TestServer, n: number): Promise<void> {
  await src.query(`INSERT INTO shop.customers (id, name, email)
    SELECT seq, CONCAT('pre ', seq), IF(seq % 3 = 0, NULL, CONCAT('p', seq, '@example.com')) FROM ${seq(n, { db: "shop", flavor: src.flavor })}`);
  await src.query(`INSERT INTO shop.orders (id, customer_id, total, note, created)
    SELECT seq, seq, (seq % 10000) / 100, IF(seq % 2, 'pre-note ✓', NULL), '2024-01-01 00:00:00.000001' + INTERVAL seq SECOND FROM ${seq(n, { db: "shop", flavor: src.flavor })}`);
  await src.query(`INSERT INTO shop.order_lines (order_id, line, sku, qty)
    SELECT o.seq, l.seq, UNHEX(LPAD(HEX(o.seq * 7 + l.seq), 8, '0')), l.seq FROM ${seq(n, { db: "shop", alias: "o", flavor: src.flavor })}, ${seq(2, { db: "shop", alias: "l", flavor: src.flavor })}`);
  await src.query(`INSERT INTO shop.ledger (id, version, payload) SELECT seq, 1, CONCAT('pre ', seq) FROM ${seq(n, { db: "shop", flavor: src.flavor })}`);
}
