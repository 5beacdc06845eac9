// SandboxShop owns the sandbox's sample data: a small shop schema (foreign keys, a few types), its prefill,
// the steady mixed workload written on the source, and the heartbeat row that measures end-to-end lag.
import type { Connection } from "mysql2/promise";
import type { TestServer } from "./servers.js";

export const SHOP_DB = "shop";

export const SHOP_SCHEMA = [
  "CREATE DATABASE IF NOT EXISTS shop CHARACTER SET utf8mb4",
  `CREATE TABLE shop.customers (
     id INT UNSIGNED NOT NULL PRIMARY KEY,
     name VARCHAR(80) NOT NULL,
     email VARCHAR(120) NOT NULL,
     country CHAR(2) NOT NULL,
     vip TINYINT(1) NOT NULL DEFAULT 0,
     created_at DATETIME(6) NOT NULL,
     KEY ix_email (email)
   ) ENGINE=InnoDB`,
  `CREATE TABLE shop.products (
     sku VARCHAR(16) NOT NULL PRIMARY KEY,
     title VARCHAR(120) NOT NULL,
     price DECIMAL(10,2) NOT NULL,
     stock INT NOT NULL,
     attrs JSON NULL
   ) ENGINE=InnoDB`,
  `CREATE TABLE shop.orders (
     id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
     customer_id INT UNSIGNED NOT NULL,
     status ENUM('new','paid','shipped','cancelled') NOT NULL DEFAULT 'new',
     total DECIMAL(12,2) NOT NULL,
     note VARCHAR(255) NULL,
     placed_at DATETIME(6) NOT NULL,
     CONSTRAINT fk_orders_customer FOREIGN KEY (customer_id) REFERENCES shop.customers (id) ON DELETE CASCADE ON UPDATE CASCADE
   ) ENGINE=InnoDB`,
  `CREATE TABLE shop.order_lines (
     order_id BIGINT UNSIGNED NOT NULL,
     line SMALLINT UNSIGNED NOT NULL,
     sku VARCHAR(16) NOT NULL,
     qty INT NOT NULL,
     price DECIMAL(10,2) NOT NULL,
     PRIMARY KEY (order_id, line),
     CONSTRAINT fk_lines_order FOREIGN KEY (order_id) REFERENCES shop.orders (id) ON DELETE CASCADE ON UPDATE CASCADE,
     CONSTRAINT fk_lines_product FOREIGN KEY (sku) REFERENCES shop.products (sku)
   ) ENGINE=InnoDB`,
  // one row, rewritten every 200 ms with the source's clock; a replica's copy tells how far behind it is
  `CREATE TABLE shop.heartbeat (id TINYINT UNSIGNED NOT NULL PRIMARY KEY, seq BIGINT UNSIGNED NOT NULL, ts DATETIME(6) NOT NULL) ENGINE=InnoDB`,
  "INSERT INTO shop.heartbeat VALUES (1, 0, NOW(6))",
];

const NAMES = ["Ada", "Björn", "Chloé", "Dmitri", "Eun-ji", "Farah", "Gonzalo", "Hana", "Ifeoma", "Jürgen", "Kenji", "Lucía", "Mateo", "Nnamdi", "Olga", "Priya", "Quentin", "Renée", "Søren", "Tomás"];
const COUNTRIES = ["DE", "FR", "US", "JP", "BR", "IN", "NG", "SE", "ES", "KR"];
const NOTES = [null, "gift wrap", "leave at the door", "fragile ☂", "call before delivery", "express"];

/** A small deterministic generator, so every sandbox starts from the same data. */
export class Rng {
  #s: number;
  constructor(seed = 42) {
    this.#s = seed >>> 0 || 1;
  }
  next(): number {
    // xorshift32
    let x = this.#s;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#s = x >>> 0;
    return this.#s / 0x1_0000_0000;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)];
  }
}

const sku = (i: number) => `SKU-${String(i).padStart(5, "0")}`;
const money = (x: number) => (Math.round(x * 100) / 100).toFixed(2);
/** an ISO-like DATETIME(6) literal in UTC, spread over the last year */
const when = (rng: Rng) => new Date(Date.now() - rng.int(365 * 86400) * 1000 - rng.int(1000)).toISOString().replace("T", " ").replace("Z", "");

export interface ShopSize {
  products: number;
  customers: number;
  orders: number;
  /** order lines per order (average) */
  linesPerOrder: number;
}

/** ≈50,000 rows: enough for the snapshot to show, small enough to load in about a second */
export const DEFAULT_SIZE: ShopSize = { products: 200, customers: 5_000, orders: 15_000, linesPerOrder: 2 };

export interface PrefillResult {
  rows: number;
  /** ids the workload continues from */
  nextCustomer: number;
  nextOrder: number;
}

async function insertBatched(c: Connection, head: string, rows: unknown[][], batch = 1000): Promise<void> {
  for (let i = 0; i < rows.length; i += batch) {
    await c.query(`${head} VALUES ?`, [rows.slice(i, i + batch)]);
  }
}

/** Create the schema and fill it. */
export async function createShop(src: TestServer, size: ShopSize = DEFAULT_SIZE): Promise<PrefillResult> {
  const c = await src.connect();
  try {
    for (const q of SHOP_SCHEMA) await c.query(q);
    const rng = new Rng(7);
    const products = Array.from({ length: size.products }, (_, i) => [
      sku(i + 1),
      `${rng.pick(["Red", "Blue", "Tiny", "Large", "Smart", "Eco"])} ${rng.pick(["lamp", "kettle", "chair", "mug", "notebook", "teapot"])} ${i + 1}`,
      money(2 + rng.next() * 200),
      rng.int(1000),
      JSON.stringify({ color: rng.pick(["red", "blue", "green"]), weightGrams: 50 + rng.int(5000) }),
    ]);
    await insertBatched(c, "INSERT INTO shop.products (sku, title, price, stock, attrs)", products);
    const customers = Array.from({ length: size.customers }, (_, i) => {
      const name = `${rng.pick(NAMES)} ${String.fromCharCode(65 + rng.int(26))}.`;
      return [i + 1, name, `customer${i + 1}@example.com`, rng.pick(COUNTRIES), rng.int(10) === 0 ? 1 : 0, when(rng)];
    });
    await insertBatched(c, "INSERT INTO shop.customers (id, name, email, country, vip, created_at)", customers);
    const orders: unknown[][] = [];
    const lines: unknown[][] = [];
    for (let o = 1; o <= size.orders; o++) {
      const n = 1 + rng.int(size.linesPerOrder * 2 - 1);
      let total = 0;
      for (let l = 1; l <= n; l++) {
        const qty = 1 + rng.int(5);
        const price = 2 + rng.next() * 100;
        total += qty * Math.round(price * 100) / 100;
        lines.push([o, l, sku(1 + rng.int(size.products)), qty, money(price)]);
      }
      orders.push([o, 1 + rng.int(size.customers), rng.pick(["new", "paid", "shipped", "cancelled"]), money(total), rng.pick(NOTES), when(rng)]);
    }
    await insertBatched(c, "INSERT INTO shop.orders (id, customer_id, status, total, note, placed_at)", orders);
    await insertBatched(c, "INSERT INTO shop.order_lines (order_id, line, sku, qty, price)", lines);
    return { rows: products.length + customers.length + orders.length + lines.length + 1, nextCustomer: size.customers + 1, nextOrder: size.orders + 1 };
  } finally {
    await c.end();
  }
}

export interface WorkloadStats {
  transactions: number;
  /** rows changed by the workload's statements on the source (cascades not counted) */
  rows: number;
  errors: number;
  lastError: string | null;
}

/**
 * A steady mixed workload on one connection: new orders with lines, status changes, customer and stock
 * updates, deletes (cascading to lines), and primary key changes (cascading through the foreign key).
 */
export class Workload {
  readonly stats: WorkloadStats = { transactions: 0, rows: 0, errors: 0, lastError: null };
  #src: TestServer;
  #rate: number;
  #rng = new Rng(1234);
  #nextCustomer: number;
  #nextOrder: number;
  #products: number;
  #stop = false;
  #done: Promise<void> | null = null;

  constructor(src: TestServer, from: PrefillResult, opts: { ratePerSecond?: number; products?: number } = {}) {
    this.#src = src;
    this.#rate = opts.ratePerSecond ?? 40;
    this.#nextCustomer = from.nextCustomer;
    this.#nextOrder = from.nextOrder;
    this.#products = opts.products ?? DEFAULT_SIZE.products;
  }

  start(): void {
    this.#done = this.#run();
  }

  async stop(): Promise<WorkloadStats> {
    this.#stop = true;
    await this.#done;
    return this.stats;
  }

  async #run(): Promise<void> {
    let c: Connection | null = null;
    const interval = 1000 / this.#rate;
    let due = Date.now();
    while (!this.#stop) {
      try {
        c ??= await this.#src.connect();
        await c.beginTransaction();
        const rows = await this.#transaction(c);
        await c.commit();
        this.stats.transactions++;
        this.stats.rows += rows;
      } catch (e: any) {
        this.stats.errors++;
        this.stats.lastError = e?.message ?? String(e);
        await c?.rollback().catch(() => undefined);
        if (e?.fatal) {
          c?.destroy();
          c = null;
        }
      }
      // steady pacing: sleep to the next tick, never try to catch up a burst
      due = Math.max(due + interval, Date.now());
      const wait = due - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
    await c?.end().catch(() => undefined);
  }

  /** one transaction; returns the rows its statements changed */
  async #transaction(c: Connection): Promise<number> {
    const rng = this.#rng;
    const q = async (sql: string, params: unknown[]) => {
      const [r] = await c.query<any>(sql, params);
      return Number(r.affectedRows ?? 0);
    };
    const anyOrder = () => 1 + rng.int(this.#nextOrder - 1);
    const anyCustomer = () => 1 + rng.int(this.#nextCustomer - 1);
    const roll = rng.int(100);
    if (roll < 40) {
      // a new order with its lines, sometimes from a new customer
      // an existing customer (some have been deleted): the first id at or after a random one
      const [found] = await c.query<any[]>("SELECT id FROM shop.customers WHERE id >= ? ORDER BY id LIMIT 1", [anyCustomer()]);
      let customer = Number(found[0]?.id ?? 0);
      let rows = 0;
      if (!customer || rng.int(10) === 0) {
        customer = this.#nextCustomer++;
        rows += await q("INSERT INTO shop.customers (id, name, email, country, vip, created_at) VALUES (?, ?, ?, ?, 0, NOW(6))", [
          customer,
          `${rng.pick(NAMES)} ${String.fromCharCode(65 + rng.int(26))}.`,
          `customer${customer}@example.com`,
          rng.pick(COUNTRIES),
        ]);
      }
      const id = this.#nextOrder++;
      const n = 1 + rng.int(4);
      const lines = Array.from({ length: n }, (_, i) => [id, i + 1, sku(1 + rng.int(this.#products)), 1 + rng.int(5), money(2 + rng.next() * 100)]);
      const total = lines.reduce((a, l) => a + Number(l[3]) * Number(l[4]), 0);
      rows += await q("INSERT INTO shop.orders (id, customer_id, status, total, note, placed_at) VALUES (?, ?, 'new', ?, ?, NOW(6))", [id, customer, money(total), rng.pick(NOTES)]);
      rows += await q("INSERT INTO shop.order_lines (order_id, line, sku, qty, price) VALUES ?", [lines]);
      for (const l of lines) rows += await q("UPDATE shop.products SET stock = stock - ? WHERE sku = ?", [l[3], l[2]]);
      return rows;
    }
    if (roll < 62) {
      return q("UPDATE shop.orders SET status = ?, note = CONCAT(COALESCE(note, ''), ?) WHERE id = ?", [rng.pick(["paid", "shipped", "cancelled"]), " ✓", anyOrder()]);
    }
    if (roll < 72) {
      return q("UPDATE shop.customers SET email = ?, vip = NOT vip WHERE id = ?", [`c${rng.int(1e9)}@example.org`, anyCustomer()]);
    }
    if (roll < 82) {
      return q("UPDATE shop.products SET stock = stock + ?, price = price * 1.01, attrs = JSON_SET(COALESCE(attrs, '{}'), '$.restocked', ?) WHERE sku = ?", [
        10 + rng.int(50),
        rng.int(1000),
        sku(1 + rng.int(this.#products)),
      ]);
    }
    if (roll < 90) {
      // deleting an order deletes its lines through ON DELETE CASCADE (the binlog carries only the order)
      return q("DELETE FROM shop.orders WHERE id = ?", [anyOrder()]);
    }
    if (roll < 95) {
      // a primary key change: the lines follow through ON UPDATE CASCADE
      return q("UPDATE shop.orders SET id = ? WHERE id = ?", [this.#nextOrder++, anyOrder()]);
    }
    if (roll < 99) {
      const order = anyOrder();
      const rows = await q("DELETE FROM shop.order_lines WHERE order_id = ? ORDER BY line DESC LIMIT 1", [order]);
      return rows + (await q("UPDATE shop.orders SET total = (SELECT COALESCE(SUM(qty * price), 0) FROM shop.order_lines WHERE order_id = ?) WHERE id = ?", [order, order]));
    }
    // rarely a customer leaves: their orders and lines cascade away
    return q("DELETE FROM shop.customers WHERE id = ?", [anyCustomer()]);
  }
}

/** Rewrites the heartbeat row on the source every `everyMs` with the source's clock. */
export class Heartbeat {
  seq = 0;
  #src: TestServer;
  #everyMs: number;
  #timer: NodeJS.Timeout | null = null;
  #c: Connection | null = null;
  #busy = false;

  constructor(src: TestServer, everyMs = 200) {
    this.#src = src;
    this.#everyMs = everyMs;
  }

  async start(): Promise<void> {
    this.#c = await this.#src.connect();
    this.#timer = setInterval(() => void this.beat(), this.#everyMs);
  }

  /** one beat now; returns its sequence number */
  async beat(): Promise<number> {
    if (this.#busy || !this.#c) return this.seq;
    this.#busy = true;
    try {
      const seq = this.seq + 1;
      await this.#c.query("UPDATE shop.heartbeat SET seq = ?, ts = NOW(6) WHERE id = 1", [seq]);
      this.seq = seq;
    } catch {
      // a missed beat only widens the lag measurement's resolution
    } finally {
      this.#busy = false;
    }
    return this.seq;
  }

  /** stop beating after one last beat; returns the last sequence number written */
  async stop(): Promise<number> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    while (this.#busy) await new Promise((r) => setTimeout(r, 10));
    if (this.#c) await this.beat();
    await this.#c?.end().catch(() => undefined);
    this.#c = null;
    return this.seq;
  }
}

/** Reads a replica's heartbeat copy; each new sequence seen is one end-to-end lag sample. */
export class LagProbe {
  readonly name: string;
  readonly samples: number[] = [];
  lastSeq = 0;
  lastLagMs: number | null = null;
  /** record samples only while this returns true (e.g. after the replica's snapshot) */
  #record: () => boolean;
  #server: TestServer;
  #c: Connection | null = null;
  #timer: NodeJS.Timeout | null = null;
  #busy = false;

  constructor(name: string, server: TestServer, record: () => boolean) {
    this.name = name;
    this.#server = server;
    this.#record = record;
  }

  start(everyMs = 50): void {
    this.#timer = setInterval(() => void this.poll(), everyMs);
  }

  async poll(): Promise<void> {
    if (this.#busy) return;
    this.#busy = true;
    try {
      this.#c ??= await this.#server.connect();
      // both clocks are this machine's: the replica's NOW(6) minus the source's NOW(6) at the beat
      const [rows] = await this.#c.query<any[]>("SELECT seq, TIMESTAMPDIFF(MICROSECOND, ts, NOW(6)) AS us FROM shop.heartbeat WHERE id = 1");
      const r = rows[0];
      if (r && Number(r.seq) > this.lastSeq) {
        this.lastSeq = Number(r.seq);
        // a copy made by the snapshot is not a streaming measurement
        this.lastLagMs = this.#record() ? Math.max(0, Number(r.us) / 1000) : null;
        if (this.lastLagMs !== null) this.samples.push(this.lastLagMs);
      }
    } catch {
      // the table is not there before the snapshot copies it
    } finally {
      this.#busy = false;
    }
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    while (this.#busy) await new Promise((r) => setTimeout(r, 10));
    await this.#c?.end().catch(() => undefined);
    this.#c = null;
  }
}

/** nearest-rank percentile of unsorted samples; null when there are none */
export function percentile(samples: readonly number[], p: number): number | null {
  if (!samples.length) return null;
  const s = [...samples].sort((a, b) => a - b);
  const rank = Math.min(s.length, Math.max(1, Math.ceil((p / 100) * s.length)));
  return s[rank - 1];
}
