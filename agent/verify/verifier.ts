// Verifier owns the comparison of the source with its replicas: which tables are in scope, their shapes,
// the chunked checksum walk by primary key, the narrowing of a differing chunk to ranges of at most
// `leafRows` keys and then to rows, and the settling of differences while the agent streams (a row that
// differs only because the replica has not applied it yet is re-read until it matches or time is up).
// No locks are taken: every statement is a plain consistent read.
import type { Config, Endpoint } from "../config.js";
import { connect, describeConnError, type Conn } from "../db.js";
import { columnDetails, primaryKeys } from "../tables.js";
import { BOOKKEEPING_SCHEMA, globToRegExp, makeTableFilter, SYSTEM_SCHEMAS } from "../rules.js";
import {
  boundarySql,
  checksumSql,
  compareShapes,
  formatKey,
  FULL_RANGE,
  keysSql,
  rowHashesByKeySql,
  rowHashesSql,
  type Column,
  type HashAlgo,
  type Key,
  type KeyRange,
  type TableShape,
} from "./ranges.js";
import { keyId, keyValues } from "../keys.js";
import { VerifyError } from "../errors.js";

export interface VerifyOptions {
  /** only this replica (by name) */
  replica?: string;
  /** only these tables: comma list of db.table (globs allowed) */
  tables?: string;
  /** rows per checksum chunk; default 10,000 */
  chunkRows?: number;
  /** a differing chunk is narrowed to ranges of at most this many source keys; default 1,000 */
  leafRows?: number;
  /** waits (ms) between re-reads of differing rows before they count as different; default ~6 s in total */
  settleMs?: number[];
  /** progress lines (stderr in the CLI) */
  progress?: (line: string) => void;
}

export const DEFAULT_SETTLE_MS = [300, 700, 1500, 1500, 2000];

/** One differing key range with its rows (keys kept in full for repair). */
export interface RangeDiff {
  range: KeyRange;
  /** first and last source key inside the range (null when the source has none there) */
  first: Key | null;
  last: Key | null;
  missing: Key[];
  extra: Key[];
  changed: Key[];
  /** no primary key: the whole table differs and cannot be narrowed */
  unnarrowed?: { sourceRows: number; replicaRows: number };
}

export type TableDiffKind = "rows" | "missing-table" | "extra-table" | "schema";

export interface TableDiff {
  table: string;
  kind: TableDiffKind;
  /** schema differences in words */
  details: string[];
  ranges: RangeDiff[];
}

export interface ReplicaOutcome {
  name: string;
  label: string;
  /** could not connect or a query failed: the comparison is incomplete */
  error?: string;
  tables: TableDiff[];
  /** tables compared */
  compared: number;
}

export interface VerifyOutcome {
  source: string;
  algo: HashAlgo;
  tables: string[];
  sourceRows: number;
  replicas: ReplicaOutcome[];
  durationMs: number;
  /** shapes by table name, from the source (repair writes with these) */
  shapes: Map<string, TableShape>;
}

/** A server and its connection(s) for one run. */
export interface Peer {
  name: string;
  label: string;
  endpoint: Endpoint;
  where: string;
  conn: Conn;
  /** second source connection: finds the next chunk boundary while the current chunk is summed */
  conn2?: Conn;
  error?: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function label(name: string, e: Endpoint): string {
  return `${name} (${e.host}:${e.port})`;
}

/** Connect to the source (fatal on failure) and the chosen replicas (a failure is recorded on the peer). */
export async function openPeers(cfg: Config, replicaName?: string): Promise<{ source: Peer; replicas: Peer[] }> {
  const chosen = replicaName === undefined ? cfg.replicas.map((r, i) => ({ r, i })) : cfg.replicas.map((r, i) => ({ r, i })).filter(({ r }) => r.name === replicaName);
  if (replicaName !== undefined && chosen.length === 0) {
    throw new VerifyError(`no replica is named "${replicaName}"; the config declares ${cfg.replicas.map((r) => r.name).join(", ")}`);
  }
  let source: Peer;
  try {
    const [a, b] = await Promise.all([connect(cfg.source, "source"), connect(cfg.source, "source")]);
    source = { name: "source", label: label("source", cfg.source), endpoint: cfg.source, where: "source", conn: a, conn2: b };
  } catch (err) {
    throw new VerifyError(`cannot connect to ${describeConnError(err, "source", cfg.source)}`);
  }
  const replicas = await Promise.all(
    chosen.map(async ({ r, i }) => {
      const where = `replicas[${i}]`;
      const p: Peer = { name: r.name, label: label(r.name, r), endpoint: r, where, conn: null as unknown as Conn };
      try {
        p.conn = await connect(r, where);
      } catch (err) {
        p.error = `cannot connect to ${describeConnError(err, `replica ${r.name}`, r)}`;
      }
      return p;
    }),
  );
  return { source, replicas };
}

export async function closePeers(peers: Peer[]): Promise<void> {
  await Promise.all(peers.flatMap((p) => [p.conn, p.conn2].filter(Boolean).map((c) => (c as Conn).end().catch(() => undefined))));
}

/**
 * The fastest hash every server has (both sides must agree): CRC32C exists on MariaDB ≥ 10.8, MD5() on
 * MariaDB and MySQL before 9 (on MySQL 9 an unknown function is looked up as a stored function, so the probe
 * fails with "No database selected" or "FUNCTION … does not exist"); SHA2() on every MySQL and MariaDB.
 */
export async function chooseAlgo(peers: Peer[]): Promise<HashAlgo> {
  const all = (sql: string) =>
    Promise.all(
      peers.map((p) =>
        p.conn
          .query(sql)
          .then(() => true)
          .catch(() => false),
      ),
    ).then((ok) => ok.every(Boolean));
  if (await all("SELECT CRC32C('a')")) return "crc64";
  if (await all("SELECT MD5('a')")) return "md5";
  return "sha2";
}

/** Base tables in scope on one server, with their shapes. */
export async function readShapes(c: Conn, cfg: Config, only?: (name: string) => boolean): Promise<Map<string, TableShape>> {
  const dbs = cfg.databases.filter((d) => d !== BOOKKEEPING_SCHEMA && !SYSTEM_SCHEMAS.includes(d.toLowerCase()));
  const out = new Map<string, TableShape>();
  if (dbs.length === 0) return out;
  const inScope = makeTableFilter({ databases: dbs, include: cfg.tables?.include, exclude: cfg.tables?.exclude });
  const [tables] = await c.query<any[]>(
    "SELECT TABLE_SCHEMA AS db, TABLE_NAME AS tbl FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA IN (?) ORDER BY 1, 2",
    [dbs],
  );
  for (const t of tables) {
    const name = `${t.db}.${t.tbl}`;
    if (!inScope(t.db, t.tbl) || (only && !only(name))) continue;
    out.set(name, { db: t.db, table: t.tbl, columns: [], key: [] });
  }
  if (out.size === 0) return out;
  for (const { db, tbl, ...col } of await columnDetails(c, dbs)) out.get(`${db}.${tbl}`)?.columns.push(col satisfies Column);
  for (const k of await primaryKeys(c, dbs)) out.get(`${k.db}.${k.tbl}`)?.key.push(k.name);
  return out;
}

/** --tables: a filter on db.table names (globs allowed), and its entries for the "matches nothing" check */
export function tablesOption(list?: string): { match?: (name: string) => boolean; entries: string[] } {
  if (!list) return { entries: [] };
  const entries = list.split(",").map((s) => s.trim()).filter(Boolean);
  const res = entries.map(globToRegExp);
  return { match: (n) => res.some((r) => r.test(n)), entries };
}

interface Sum {
  n: number;
  x: string;
}

async function checksum(p: Peer, s: TableShape, r: KeyRange, algo: HashAlgo, conn = p.conn): Promise<Sum> {
  const [rows] = await conn.query<any[]>(checksumSql(s, r, algo));
  return { n: Number(rows[0].n), x: String(rows[0].x) };
}

async function rowHashes(c: Conn, s: TableShape, r: KeyRange, algo: HashAlgo, page = 5000): Promise<Map<string, { key: Key; h: string }>> {
  const out = new Map<string, { key: Key; h: string }>();
  let after = r.after;
  for (;;) {
    const [rows] = await c.query<any[]>(rowHashesSql(s, { after, through: r.through }, algo, page));
    for (const row of rows) {
      const key = keyValues(s.key, row);
      out.set(keyId(key), { key, h: row["#h"] });
    }
    if (rows.length < page) return out;
    after = keyValues(s.key, rows[rows.length - 1]);
  }
}

async function rowHashesByKey(c: Conn, s: TableShape, keys: Key[], algo: HashAlgo): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (let i = 0; i < keys.length; i += 500) {
    const [rows] = await c.query<any[]>(rowHashesByKeySql(s, keys.slice(i, i + 500), algo));
    for (const row of rows) out.set(keyId(keyValues(s.key, row)), row["#h"]);
  }
  return out;
}

/** Row-level difference of one range between the source and a replica. */
export async function diffRange(src: Conn, rep: Conn, s: TableShape, r: KeyRange, algo: HashAlgo): Promise<Pick<RangeDiff, "missing" | "extra" | "changed">> {
  const [a, b] = await Promise.all([rowHashes(src, s, r, algo), rowHashes(rep, s, r, algo)]);
  const missing: Key[] = [];
  const extra: Key[] = [];
  const changed: Key[] = [];
  for (const [id, v] of a) {
    const w = b.get(id);
    if (w === undefined) missing.push(v.key);
    else if (w.h !== v.h) changed.push(v.key);
  }
  for (const [id, w] of b) if (!a.has(id)) extra.push(w.key);
  return { missing, extra, changed };
}

/** Re-read the differing keys on both sides; keep those that still differ (classified afresh). */
export async function recheckKeys(src: Conn, rep: Conn, s: TableShape, d: RangeDiff, algo: HashAlgo): Promise<RangeDiff> {
  const keys = [...d.missing, ...d.extra, ...d.changed];
  const [a, b] = await Promise.all([rowHashesByKey(src, s, keys, algo), rowHashesByKey(rep, s, keys, algo)]);
  const out: RangeDiff = { ...d, missing: [], extra: [], changed: [] };
  for (const k of keys) {
    const id = keyId(k);
    const x = a.get(id);
    const y = b.get(id);
    if (x === y) continue;
    if (y === undefined) out.missing.push(k);
    else if (x === undefined) out.extra.push(k);
    else out.changed.push(k);
  }
  return out;
}

export function diffRows(d: RangeDiff): number {
  return d.unnarrowed ? Math.max(1, Math.abs(d.unnarrowed.sourceRows - d.unnarrowed.replicaRows)) : d.missing.length + d.extra.length + d.changed.length;
}

/** Split a differing chunk into ranges of at most leafRows source keys; return the ones that differ, row by row. */
async function narrow(source: Peer, reps: Peer[], s: TableShape, chunk: KeyRange, algo: HashAlgo, leafRows: number, onError: (p: Peer, e: unknown) => void): Promise<Map<Peer, RangeDiff[]>> {
  const [keyRows] = await source.conn.query<any[]>(keysSql(s, chunk));
  const keys = keyRows.map((r) => keyValues(s.key, r));
  const leaves: { range: KeyRange; first: Key | null; last: Key | null }[] = [];
  for (let i = 0; i < Math.max(keys.length, 1); i += leafRows) {
    const part = keys.slice(i, i + leafRows);
    const after = i === 0 ? chunk.after : keys[i - 1];
    const through = i + leafRows >= keys.length ? chunk.through : part[part.length - 1];
    leaves.push({ range: { after, through }, first: part[0] ?? null, last: part[part.length - 1] ?? null });
  }
  const out = new Map<Peer, RangeDiff[]>();
  for (const leaf of leaves) {
    let differing = reps;
    if (leaves.length > 1) {
      const sums = await Promise.all([checksum(source, s, leaf.range, algo), ...reps.map((p) => checksum(p, s, leaf.range, algo).catch((e) => (onError(p, e), null)))]);
      const src = sums[0] as Sum;
      differing = reps.filter((_, i) => {
        const r = sums[i + 1];
        return r !== null && (r.n !== src.n || r.x !== src.x);
      });
    }
    await Promise.all(
      differing.map(async (p) => {
        try {
          const d = await diffRange(source.conn, p.conn, s, leaf.range, algo);
          if (d.missing.length + d.extra.length + d.changed.length === 0) return;
          const list = out.get(p) ?? [];
          list.push({ range: leaf.range, first: leaf.first, last: leaf.last, ...d });
          out.set(p, list);
        } catch (e) {
          onError(p, e);
        }
      }),
    );
  }
  return out;
}

/** Compare the source with each replica. Throws VerifyError when the run cannot start (source, options). */
/** runVerify for a report that goes on after a failure: the outcome, or the error's message. */
export async function verifyOrError(cfg: Config): Promise<{ outcome: VerifyOutcome | null; verifyError: string | null }> {
  try {
    return { outcome: await runVerify(cfg), verifyError: null };
  } catch (e: any) {
    return { outcome: null, verifyError: e?.message ?? String(e) };
  }
}

export async function runVerify(cfg: Config, opts: VerifyOptions = {}, peers?: { source: Peer; replicas: Peer[] }): Promise<VerifyOutcome> {
  const t0 = Date.now();
  const chunkRows = opts.chunkRows ?? 10_000;
  const leafRows = Math.min(opts.leafRows ?? 1000, chunkRows);
  const settle = opts.settleMs ?? DEFAULT_SETTLE_MS;
  const progress = opts.progress ?? (() => undefined);
  const own = peers === undefined;
  const { source, replicas } = peers ?? (await openPeers(cfg, opts.replica));
  try {
    const live = () => replicas.filter((p) => !p.error);
    const fail = (p: Peer, e: unknown) => {
      if (!p.error) p.error = describeConnError(e, `replica ${p.name}`, p.endpoint);
    };
    const filter = tablesOption(opts.tables);
    const algo = await chooseAlgo([source, ...live()]);
    let srcShapes: Map<string, TableShape>;
    try {
      srcShapes = await readShapes(source.conn, cfg, filter.match);
    } catch (e) {
      throw new VerifyError(`cannot read the tables of ${describeConnError(e, "source", cfg.source)}`);
    }
    const repShapes = new Map<Peer, Map<string, TableShape>>();
    await Promise.all(live().map((p) => readShapes(p.conn, cfg, filter.match).then((m) => void repShapes.set(p, m), (e) => fail(p, e))));
    for (const entry of filter.entries) {
      const re = globToRegExp(entry);
      const anywhere = [...srcShapes.keys(), ...[...repShapes.values()].flatMap((m) => [...m.keys()])].some((n) => re.test(n));
      if (!anywhere) throw new VerifyError(`--tables ${entry}: no table in scope matches it (scope: databases ${cfg.databases.join(", ")}${cfg.tables?.include ? `, include ${cfg.tables.include.join(", ")}` : ""}${cfg.tables?.exclude ? `, exclude ${cfg.tables.exclude.join(", ")}` : ""})`);
    }

    const outcome = new Map<Peer, ReplicaOutcome>(replicas.map((p) => [p, { name: p.name, label: p.label, tables: [], compared: 0 }]));
    const diffsOf = (p: Peer, table: string, kind: TableDiffKind): TableDiff => {
      const o = outcome.get(p)!;
      let t = o.tables.find((x) => x.table === table && x.kind === kind);
      if (!t) o.tables.push((t = { table, kind, details: [], ranges: [] }));
      return t;
    };
    let sourceRows = 0;

    for (const [name, s] of srcShapes) {
      const reps: Peer[] = [];
      for (const p of live()) {
        const rs = repShapes.get(p)?.get(name);
        if (!rs) {
          diffsOf(p, name, "missing-table").details.push(`${name} exists on the source but not on the replica`);
          continue;
        }
        const drift = compareShapes(s, rs);
        if (drift.length) {
          diffsOf(p, name, "schema").details.push(...drift);
          // with only the column order changed the data can still be compared by name
          if (!drift.every((d) => d.startsWith("columns are in a different order"))) continue;
        }
        reps.push(p);
      }
      if (reps.length === 0) continue;
      progress(`${name}: comparing with ${reps.map((p) => p.name).join(", ")}`);
      const suspects: { chunk: KeyRange; reps: Peer[] }[] = [];
      try {
        if (s.key.length === 0) {
          // no primary key (rule 4 refuses it, but verify still says whether it is equal): one chunk
          const [src, ...others] = await Promise.all([checksum(source, s, FULL_RANGE, algo), ...reps.map((p) => checksum(p, s, FULL_RANGE, algo).catch((e) => (fail(p, e), null)))]);
          sourceRows += src.n;
          reps.forEach((p, i) => {
            const o = others[i];
            if (o && (o.n !== src.n || o.x !== src.x)) {
              diffsOf(p, name, "rows").ranges.push({ range: FULL_RANGE, first: null, last: null, missing: [], extra: [], changed: [], unnarrowed: { sourceRows: src.n, replicaRows: o.n } });
            }
          });
        } else {
          let after: Key | null = null;
          const nextBoundary = async (from: Key | null): Promise<Key | null> => {
            const [rows] = await source.conn2!.query<any[]>(boundarySql(s, from, chunkRows));
            return rows.length ? keyValues(s.key, rows[0]) : null;
          };
          let pending: Promise<Key | null> = nextBoundary(after);
          pending.catch(() => undefined); // awaited below; this only keeps an early exit from leaving it unhandled
          for (;;) {
            const through = await pending;
            const chunk: KeyRange = { after, through };
            // find the next boundary while this chunk is summed on every server
            if (through) {
              pending = nextBoundary(through);
              pending.catch(() => undefined);
            }
            const active = reps.filter((p) => !p.error);
            const [src, ...others] = await Promise.all([checksum(source, s, chunk, algo), ...active.map((p) => checksum(p, s, chunk, algo).catch((e) => (fail(p, e), null)))]);
            sourceRows += src.n;
            const differing = active.filter((_, i) => others[i] !== null && (others[i]!.n !== src.n || others[i]!.x !== src.x));
            if (differing.length) suspects.push({ chunk, reps: differing });
            if (!through) break;
            after = through;
          }
          for (const sus of suspects) {
            const found = await narrow(source, sus.reps.filter((p) => !p.error), s, sus.chunk, algo, leafRows, fail);
            for (const [p, ranges] of found) diffsOf(p, name, "rows").ranges.push(...ranges);
          }
        }
      } catch (e) {
        throw new VerifyError(`${name}: a query on the source failed: ${describeConnError(e, "source", cfg.source)}`);
      }
      for (const p of reps) if (!p.error) outcome.get(p)!.compared++;
    }

    // tables on a replica that the source does not have (within scope)
    for (const p of live()) {
      for (const name of repShapes.get(p)?.keys() ?? []) {
        if (!srcShapes.has(name)) diffsOf(p, name, "extra-table").details.push(`${name} exists on the replica but not on the source`);
      }
    }

    // Settle: while the agent streams, a replica is a little behind. Re-read the differing rows a few
    // times; only what still differs after the last wait is reported.
    const pendingRows = () =>
      live().flatMap((p) => outcome.get(p)!.tables.filter((t) => t.kind === "rows").map((t) => ({ p, t })));
    for (const wait of settle) {
      if (pendingRows().length === 0) break;
      progress(`waiting ${wait} ms for replicas to catch up before re-checking ${pendingRows().length} differing table(s)`);
      await sleep(wait);
      for (const { p, t } of pendingRows()) {
        const s = srcShapes.get(t.table)!;
        try {
          const next: RangeDiff[] = [];
          for (const d of t.ranges) {
            if (d.unnarrowed) {
              const [a, b] = await Promise.all([checksum(source, s, FULL_RANGE, algo), checksum(p, s, FULL_RANGE, algo)]);
              if (a.n !== b.n || a.x !== b.x) next.push({ ...d, unnarrowed: { sourceRows: a.n, replicaRows: b.n } });
              continue;
            }
            const r = await recheckKeys(source.conn, p.conn, s, d, algo);
            if (diffRows(r) > 0) next.push(r);
          }
          t.ranges = next;
        } catch (e) {
          fail(p, e);
        }
      }
      for (const p of live()) outcome.get(p)!.tables = outcome.get(p)!.tables.filter((t) => t.kind !== "rows" || t.ranges.length > 0);
    }

    for (const p of replicas) {
      const o = outcome.get(p)!;
      if (p.error) o.error = p.error;
      o.tables.sort((a, b) => (a.table < b.table ? -1 : a.table > b.table ? 1 : a.kind < b.kind ? -1 : 1));
    }
    return {
      source: source.label,
      algo,
      tables: [...srcShapes.keys()],
      sourceRows,
      replicas: replicas.map((p) => outcome.get(p)!),
      durationMs: Date.now() - t0,
      shapes: srcShapes,
    };
  } finally {
    if (own) await closePeers([source, ...replicas]);
  }
}

/** "keys [1200 .. 2199]" (first and last source key there), or the exact range "(a .. b]" when rows
 *  exist only on the replica (they may lie outside the source's first and last key). */
export function describeRange(d: RangeDiff): string {
  if (d.unnarrowed) return "whole table (no primary key to narrow by)";
  if (d.first && d.last && d.extra.length === 0) return `keys [${formatKey(d.first)} .. ${formatKey(d.last)}]`;
  return `keys (${formatKey(d.range.after, "lo")} .. ${formatKey(d.range.through, "hi")}${d.range.through ? "]" : ")"}`;
}

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/** "1 changed row (1234); 2 extra rows (7, 9)" with at most `sample` keys each */
export function describeCounts(d: RangeDiff, sample = 5): string {
  if (d.unnarrowed) return `${d.unnarrowed.sourceRows} rows on the source, ${d.unnarrowed.replicaRows} on the replica, contents differ`;
  const part = (keys: Key[], what: string) => {
    if (!keys.length) return null;
    const shown = keys.slice(0, sample).map((k) => formatKey(k)).join(", ");
    return `${plural(keys.length, `${what} row`)} (${shown}${keys.length > sample ? ", …" : ""})`;
  };
  return [part(d.changed, "changed"), part(d.missing, "missing"), part(d.extra, "extra")].filter(Boolean).join("; ");
}

export function exitCodeOf(o: VerifyOutcome): 0 | 1 | 2 {
  if (o.replicas.some((r) => r.error)) return 2;
  return o.replicas.some((r) => r.tables.length > 0) ? 1 : 0;
}
