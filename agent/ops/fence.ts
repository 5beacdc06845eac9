// Fence owns stopping writes on a server for a cutover: `read_only=ON`, then the open write transactions
// end or are killed within the budget (each one named in the report), and lifting the fence again. It also
// knows which global privileges a cutover needs on each server, read from SHOW GRANTS.
import type { Conn } from "../db.js";
import type { Flavor } from "../rules.js";

export interface KilledTransaction {
  thread: number;
  user: string;
  host: string;
  db: string | null;
  startedAt: string;
  rowsModified: number;
}

export interface FenceResult {
  ok: boolean;
  /** read_only before the fence (the lift restores it) */
  wasReadOnly: boolean;
  killed: KilledTransaction[];
  /** ms from the start until read_only=ON took hold */
  readOnlyMs?: number;
  error?: string;
}

/** A privilege need: any of `anyOf` held globally satisfies it. */
export interface PrivilegeNeed {
  what: string;
  anyOf: string[];
}

export function needs(flavor: Flavor) {
  const mysql = flavor === "mysql";
  return {
    setReadOnly: { what: "SET GLOBAL read_only (the fence)", anyOf: mysql ? ["SYSTEM_VARIABLES_ADMIN", "SUPER"] : ["READ_ONLY ADMIN", "SUPER"] },
    kill: { what: "KILL of other accounts' open transactions (the fence)", anyOf: mysql ? ["CONNECTION_ADMIN", "SUPER"] : ["CONNECTION ADMIN", "SUPER"] },
    process: { what: "seeing other sessions' transactions (information_schema.INNODB_TRX)", anyOf: ["PROCESS", "SUPER"] },
    bypass: { what: "writing to a read-only server (the way back writes to the old source)", anyOf: mysql ? ["CONNECTION_ADMIN", "SUPER"] : ["READ_ONLY ADMIN", "SUPER"] },
  } satisfies Record<string, PrivilegeNeed>;
}

/** Global privileges in SHOW GRANTS output (ALL PRIVILEGES ON *.* counts as every static privilege). */
export function globalPrivileges(grants: string[]): { all: boolean; privs: Set<string> } {
  const privs = new Set<string>();
  let all = false;
  for (const g of grants) {
    const m = /^GRANT\s+(.+?)\s+ON\s+\*\.\*\s+TO/i.exec(g);
    if (!m) continue;
    for (const p of m[1].split(",").map((x) => x.trim().toUpperCase().replace(/\s+/g, " "))) {
      if (p === "ALL" || p === "ALL PRIVILEGES") all = true;
      privs.add(p);
    }
  }
  return { all, privs };
}

/**
 * Whether the grants satisfy a need. ALL PRIVILEGES covers static privileges (SUPER among them); MySQL lists
 * dynamic ones (CONNECTION_ADMIN, SYSTEM_VARIABLES_ADMIN) apart, but SUPER (in ALL) satisfies every need here.
 */
export function holds(grants: string[], need: PrivilegeNeed): boolean {
  const g = globalPrivileges(grants);
  if (g.all) return true;
  return need.anyOf.some((p) => g.privs.has(p));
}

/** Schema-level privilege (e.g. TRIGGER, EVENT on a synced database). */
export function holdsOn(grants: string[], priv: string, schema: string): boolean {
  for (const g of grants) {
    const m = /^GRANT\s+(.+?)\s+ON\s+(\S+)\s+TO/i.exec(g);
    if (!m) continue;
    const target = m[2].replace(/`/g, "");
    const db = target.split(".")[0];
    if (!(target === "*.*" || (db === schema && target.endsWith(".*")))) continue;
    const ps = m[1].split(",").map((x) => x.trim().toUpperCase());
    if (ps.includes("ALL") || ps.includes("ALL PRIVILEGES") || ps.includes(priv)) return true;
  }
  return false;
}

/** Accounts (other than `self`) that hold a privilege bypassing read_only: they can still write after the fence. */
export async function bypassAccounts(c: Conn, flavor: Flavor): Promise<string[]> {
  const names = flavor === "mysql" ? ["SUPER", "CONNECTION_ADMIN"] : ["SUPER", "READ_ONLY ADMIN"];
  try {
    const [rows] = await c.query<any[]>("SELECT DISTINCT GRANTEE AS g FROM information_schema.USER_PRIVILEGES WHERE PRIVILEGE_TYPE IN (?)", [names]);
    const [[me]] = await c.query<any[]>("SELECT CURRENT_USER() AS u");
    const self = String(me.u);
    const norm = (s: string) => s.replace(/'/g, "");
    return rows
      .map((r) => String(r.g))
      .filter((g) => norm(g) !== norm(self) && !/^'mysql\.(session|sys|infoschema)'/.test(g) && !/^'mariadb\.sys'/.test(g))
      .sort();
  } catch {
    return [];
  }
}

/** Open transactions that wrote something, other than the listed connections'. */
async function writeTransactions(c: Conn, exclude: number[]): Promise<KilledTransaction[]> {
  const [rows] = await c.query<any[]>(
    "SELECT trx_mysql_thread_id AS thread, trx_started AS started, trx_rows_modified AS rows_ FROM information_schema.INNODB_TRX WHERE trx_rows_modified > 0",
  );
  const open = rows.filter((r) => !exclude.includes(Number(r.thread)));
  const who = await sessionsOf(
    c,
    open.map((r) => Number(r.thread)),
  );
  return open.map((r) => {
    const s = who.get(Number(r.thread));
    return { thread: Number(r.thread), user: String(s?.user ?? ""), host: String(s?.host ?? ""), db: s?.db ?? null, startedAt: String(r.started), rowsModified: Number(r.rows_) };
  });
}

/**
 * The account, host and schema of these sessions, for the report. information_schema.PROCESSLIST builds all its
 * columns, the statement text included, and MySQL 8.0.22+ fails the whole query when a running statement holds a
 * 4-byte character (its INFO column is utf8mb3: "Cannot convert string '\xF0\x9F…' from utf8mb4 to utf8mb3"): an
 * application writing emoji made the fence fail. SHOW PROCESSLIST has no such column type (both flavors, no
 * performance_schema needed); PROCESSLIST is the fallback; a session neither names is reported without them.
 */
async function sessionsOf(c: Conn, ids: number[]): Promise<Map<number, { user?: string; host?: string; db?: string | null }>> {
  if (!ids.length) return new Map();
  const want = new Set(ids);
  try {
    const [rows] = await c.query<any[]>("SHOW PROCESSLIST");
    return new Map(rows.filter((r) => want.has(Number(r.Id))).map((r) => [Number(r.Id), { user: r.User, host: r.Host, db: r.db }]));
  } catch {
    // not allowed here: the information schema, then nothing
  }
  try {
    const [rows] = await c.query<any[]>("SELECT ID AS id, USER AS user, HOST AS host, DB AS db FROM information_schema.PROCESSLIST WHERE ID IN (?)", [ids]);
    return new Map(rows.map((r) => [Number(r.id), r]));
  } catch {
    return new Map();
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Sets read_only=ON and ends the open write transactions: each gets `graceMs` to finish on its own (a commit
 * already under way; under read_only a commit of changes fails, so the session rolls back), then its
 * connection is killed. All within `budgetMs`, else not ok (the caller lifts the fence).
 */
export async function fence(ctl: Conn, aux: Conn, budgetMs: number, graceMs: number, exclude: number[]): Promise<FenceResult> {
  const t0 = Date.now();
  const [[ro]] = await ctl.query<any[]>("SELECT @@GLOBAL.read_only AS r");
  const wasReadOnly = Number(ro.r) === 1;
  const killed: KilledTransaction[] = [];
  // SET GLOBAL read_only waits for commits in progress (and table locks): bounded by lock_wait_timeout
  await ctl.query(`SET SESSION lock_wait_timeout = ${Math.max(1, Math.ceil(budgetMs / 1000))}`);
  let setDone = false;
  let setAt = 0;
  let setErr: any = null;
  // already ON (set beforehand, e.g. an Azure server parameter): nothing to set
  const set = (wasReadOnly ? Promise.resolve() : ctl.query("SET GLOBAL read_only = ON")).then(
    () => {
      setDone = true;
      setAt = Date.now() - t0;
    },
    (e) => (setErr = e),
  );
  const seen = new Map<number, number>();
  try {
    while (Date.now() - t0 < budgetMs) {
      if (setErr) return { ok: false, wasReadOnly, killed, error: `SET GLOBAL read_only = ON failed: ${setErr.message}` };
      const open = await writeTransactions(aux, exclude);
      if (setDone && open.every((t) => killed.some((k) => k.thread === t.thread))) return { ok: true, wasReadOnly, killed, readOnlyMs: setAt };
      const now = Date.now();
      for (const t of open) {
        if (!seen.has(t.thread)) seen.set(t.thread, now);
        if (now - seen.get(t.thread)! >= graceMs && !killed.some((k) => k.thread === t.thread)) {
          try {
            await aux.query(`KILL ${t.thread}`);
            killed.push(t);
          } catch (e: any) {
            // 1094: unknown thread: it ended by itself meanwhile
            if (e?.errno !== 1094) return { ok: false, wasReadOnly, killed, error: `KILL ${t.thread} (${t.user}@${t.host}) failed: ${e.message}` };
          }
        }
      }
      await sleep(25);
    }
    await Promise.race([set, sleep(50)]);
    if (setErr) return { ok: false, wasReadOnly, killed, error: `SET GLOBAL read_only = ON failed: ${setErr.message}` };
    return { ok: false, wasReadOnly, killed, error: `the fence did not settle within ${budgetMs} ms (${setDone ? "write transactions still open" : "SET GLOBAL read_only still waiting for a lock"})` };
  } finally {
    if (!setDone && !setErr) {
      // still waiting for a lock: stop the statement so that a lift is not undone by it later
      aux.query(`KILL QUERY ${(ctl as any).threadId}`).catch(() => undefined);
      await set.catch(() => undefined);
    }
  }
}

/** Lifts the fence: read_only back to what it was before. */
export async function liftFence(c: Conn, wasReadOnly: boolean): Promise<void> {
  if (wasReadOnly) return;
  await c.query("SET GLOBAL read_only = OFF");
}
