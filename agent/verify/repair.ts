// Repair owns making replicas equal to the source where verify found them different: it takes a fresh
// look at each differing range, then deletes the extra rows, updates the changed ones and inserts the
// missing ones, on the replica, one transaction per range (foreign key checks off: the source already
// enforced them). A table missing on a replica is created from the source's definition and copied.
// Nothing else is written. Schema drift and tables that exist only on a replica are reported, not
// "repaired": dropping or altering is a decision for a person (or a resnapshot).
import { describeConnError, isTransient, qualified, quoteId } from "../db.js";
import type { Config } from "../config.js";
import {
  deleteSql,
  insertSql,
  readRangeSql,
  readRowsSql,
  updateSql,
  type HashAlgo,
  type Key,
  type KeyRange,
  type TableShape,
} from "./ranges.js";
import { keyId, keyValues } from "../keys.js";
import { closePeers, describeRange, openPeers, recheckKeys, runVerify, type Peer, type RangeDiff, type VerifyOptions, type VerifyOutcome } from "./verifier.js";

export interface RepairOptions extends VerifyOptions {
  /** print the SQL instead of running it */
  dryRun?: boolean;
  /** where SQL (dry run) and the account of what was done go */
  out?: (text: string) => void;
}

export interface RepairOutcome {
  before: VerifyOutcome;
  /** rows written (or that would be written with dryRun) */
  inserted: number;
  updated: number;
  deleted: number;
  tablesCreated: number;
  /** what repair does not do, each with the reason and the fix */
  unrepairable: string[];
  /** replicas where a write failed */
  failures: string[];
  /** verify after the repair (not with dryRun) */
  after?: VerifyOutcome;
}

const SESSION = "SET SESSION foreign_key_checks = 0, time_zone = '+00:00', sql_mode = 'NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'";
const INSERT_BATCH = 200;
const DELETE_BATCH = 500;

interface Plan {
  title: string;
  statements: string[];
  inserted: number;
  updated: number;
  deleted: number;
}

/** The statements that make one range of a replica equal to the source, from a fresh look at both. */
async function planRange(src: Peer, rep: Peer, s: TableShape, d: RangeDiff, table: string, algo: HashAlgo): Promise<Plan | null> {
  const now = await recheckKeys(src.conn, rep.conn, s, d, algo);
  const write = [...now.changed, ...now.missing];
  if (write.length + now.extra.length === 0) return null;
  const rows = new Map<string, Record<string, unknown>>();
  for (let i = 0; i < write.length; i += DELETE_BATCH) {
    const [rs] = await src.conn.query<any[]>(readRowsSql(s, write.slice(i, i + DELETE_BATCH)));
    for (const r of rs) rows.set(keyId(keyValues(s.key, r)), r);
  }
  const statements: string[] = [];
  // extra rows first, then changed, then missing: a unique value held by a row that goes away or
  // changes is free before a missing row needs it
  for (let i = 0; i < now.extra.length; i += DELETE_BATCH) statements.push(deleteSql(s, now.extra.slice(i, i + DELETE_BATCH)));
  let updated = 0;
  for (const k of now.changed) {
    const r = rows.get(keyId(k));
    if (!r) continue; // deleted on the source meanwhile: the agent removes it; a later verify says so
    statements.push(updateSql(s, k, r));
    updated++;
  }
  const ins = now.missing.map((k) => rows.get(keyId(k))).filter((r): r is Record<string, unknown> => r !== undefined);
  for (let i = 0; i < ins.length; i += INSERT_BATCH) statements.push(insertSql(s, ins.slice(i, i + INSERT_BATCH)));
  return { title: `${table}: ${describeRange(d)}`, statements, inserted: ins.length, updated, deleted: now.extra.length };
}

/** CREATE TABLE for a table missing on a replica, then its rows page by page. */
async function* planCopy(src: Peer, s: TableShape, table: string): AsyncGenerator<Plan> {
  const [rows] = await src.conn.query<any[]>(`SHOW CREATE TABLE ${qualified(s.db, s.table)}`);
  const ddl = String(rows[0]["Create Table"]).replace(/^CREATE TABLE `(?:[^`]|``)+`/, `CREATE TABLE ${qualified(s.db, s.table)}`);
  yield { title: `${table}: create the table (missing on the replica)`, statements: [`CREATE DATABASE IF NOT EXISTS ${quoteId(s.db)}`, ddl], inserted: 0, updated: 0, deleted: 0 };
  let after: Key | null = null;
  for (;;) {
    const range: KeyRange = { after, through: null };
    const [page] = await src.conn.query<any[]>(readRangeSql(s, range, 1000));
    if (page.length === 0) return;
    const statements: string[] = [];
    for (let i = 0; i < page.length; i += INSERT_BATCH) statements.push(insertSql(s, page.slice(i, i + INSERT_BATCH)));
    yield { title: `${table}: copy rows after ${after ? JSON.stringify(after) : "the start"}`, statements, inserted: page.length, updated: 0, deleted: 0 };
    if (page.length < 1000) return;
    after = keyValues(s.key, page[page.length - 1]);
  }
}

async function apply(rep: Peer, p: Plan): Promise<void> {
  await rep.conn.query(SESSION);
  await rep.conn.query("START TRANSACTION");
  try {
    for (const sql of p.statements) await rep.conn.query(sql);
    await rep.conn.query("COMMIT");
  } catch (e) {
    await rep.conn.query("ROLLBACK").catch(() => undefined);
    throw e;
  }
}

/** Find the differences, write what makes them equal (or print it), verify again. */
export async function runRepair(cfg: Config, opts: RepairOptions = {}): Promise<RepairOutcome> {
  const out = opts.out ?? ((t: string) => void process.stdout.write(t));
  const peers = await openPeers(cfg, opts.replica);
  const res: RepairOutcome = { before: null as unknown as VerifyOutcome, inserted: 0, updated: 0, deleted: 0, tablesCreated: 0, unrepairable: [], failures: [] };
  try {
    res.before = await runVerify(cfg, opts, peers);
    const { source } = peers;
    for (const ro of res.before.replicas) {
      const rep = peers.replicas.find((p) => p.name === ro.name)!;
      if (rep.error || ro.tables.length === 0) continue;
      if (opts.dryRun) out(`-- replica ${ro.label}\n${SESSION};\n`);
      for (const t of ro.tables) {
        const s = res.before.shapes.get(t.table);
        if (t.kind === "extra-table") {
          res.unrepairable.push(`${ro.name}: ${t.table} exists only on the replica; repair does not drop tables. If it should not be there, DROP TABLE ${t.table} on the replica; if it should, create it on the source.`);
          continue;
        }
        if (t.kind === "schema") {
          res.unrepairable.push(`${ro.name}: ${t.table} has a different definition (${t.details.join("; ")}); align it with ALTER TABLE on the replica (or run datasync resnapshot --replica ${ro.name} --tables ${t.table}), then run repair again.`);
          continue;
        }
        if (!s) continue;
        try {
          if (t.kind === "missing-table") {
            if (s.key.length === 0) {
              res.unrepairable.push(`${ro.name}: ${t.table} is missing on the replica and has no primary key; add a primary key on the source (rule 4) or copy it by hand.`);
              continue;
            }
            for await (const p of planCopy(source, s, t.table)) {
              if (opts.dryRun) out(sqlText(p));
              else await apply(rep, p);
              count(res, p);
            }
            res.tablesCreated++;
            continue;
          }
          for (const d of t.ranges) {
            if (d.unnarrowed) {
              res.unrepairable.push(`${ro.name}: ${t.table} differs but has no primary key, so its rows cannot be located; add a primary key (rule 4) or copy the table by hand.`);
              continue;
            }
            // a transient error, or a duplicate key because the agent wrote the same row meanwhile:
            // look again and retry, at most three times
            for (let attempt = 1; ; attempt++) {
              const p = await planRange(source, rep, s, d, t.table, res.before.algo);
              if (!p) break;
              if (opts.dryRun) {
                out(sqlText(p));
                count(res, p);
                break;
              }
              try {
                await apply(rep, p);
                count(res, p);
                break;
              } catch (e: any) {
                if (attempt >= 3 || !(isTransient(e) || e?.errno === 1062)) {
                  throw Object.assign(new Error(`${p.title}: ${e?.message ?? e}${e?.sql ? ` (SQL: ${String(e.sql).slice(0, 300)})` : ""}`), { cause: e });
                }
                await new Promise((r) => setTimeout(r, 200 * attempt));
              }
            }
          }
        } catch (e: any) {
          res.failures.push(`${ro.name}: ${t.table}: ${e?.errno || e?.code ? describeConnError(e, `replica ${ro.name}`, rep.endpoint) : (e?.message ?? String(e))}`);
        }
      }
    }
  } finally {
    await closePeers([peers.source, ...peers.replicas]);
  }
  if (!opts.dryRun && res.inserted + res.updated + res.deleted + res.tablesCreated > 0) {
    res.after = await runVerify(cfg, opts);
  } else if (!opts.dryRun) {
    res.after = res.before;
  }
  return res;
}

function sqlText(p: Plan): string {
  return `-- ${p.title}\nSTART TRANSACTION;\n${p.statements.map((x) => `${x};`).join("\n")}\nCOMMIT;\n`;
}

function count(res: RepairOutcome, p: Plan): void {
  res.inserted += p.inserted;
  res.updated += p.updated;
  res.deleted += p.deleted;
}
