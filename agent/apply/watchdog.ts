// ApplyWatch owns the stuck-apply watchdog of one replica: what its applier awaits right now (a statement on the
// replica, a snapshot chunk's watermark, the source stream), when it last completed a step, and whether a replica
// with work queued has made no step for `apply.stuckSeconds`. Nothing else notices that case: a DDL has no
// statement timeout (a metadata lock held by another session waits for lock_wait_timeout, a year by default), and
// the apply loop's own checks (stall, lost wake-up) run between its awaits, never during one.
//
// The statement is described by its kind and object only ("insert into `shop`.`orders`"): row values never
// leave the agent through this path, and neither does the processlist's INFO text (it is summarised the same way).
import type { Conn } from "../db.js";

/** kinds of statement the summary names; anything else is "other statement" */
const KINDS: [RegExp, string][] = [
  [/^INSERT\s+(?:IGNORE\s+)?INTO\s+/i, "insert into"],
  [/^REPLACE\s+INTO\s+/i, "replace into"],
  [/^UPDATE\s+(?:IGNORE\s+)?/i, "update"],
  [/^DELETE\s+(?:IGNORE\s+)?FROM\s+/i, "delete from"],
  [/^ALTER\s+TABLE\s+/i, "alter table"],
  [/^CREATE\s+(?:TEMPORARY\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?/i, "create table"],
  [/^DROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?/i, "drop table"],
  [/^RENAME\s+TABLE\s+/i, "rename table"],
  [/^TRUNCATE\s+(?:TABLE\s+)?/i, "truncate table"],
  [/^CREATE\s+(?:UNIQUE\s+|FULLTEXT\s+|SPATIAL\s+)?INDEX\s+\S+\s+ON\s+/i, "create index on"],
  [/^DROP\s+INDEX\s+\S+\s+ON\s+/i, "drop index on"],
  [/^(?:CREATE|ALTER|DROP)\s+(?:OR\s+REPLACE\s+)?(?:ALGORITHM\s*=\s*\w+\s+)?(?:DEFINER\s*=\s*\S+\s+)?(?:SQL\s+SECURITY\s+\w+\s+)?VIEW\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?/i, "view"],
  [/^(?:CREATE|DROP)\s+(?:DATABASE|SCHEMA)\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?/i, "database"],
  [/^START\s+TRANSACTION\b|^BEGIN\b/i, "start transaction"],
  [/^COMMIT\b/i, "commit"],
  [/^ROLLBACK\b/i, "rollback"],
  [/^SET\s+/i, "set"],
  [/^SELECT\s+/i, "select"],
  [/^USE\s+/i, "use"],
];

/** a schema-qualified or plain identifier, backquoted or bare (an identifier only, never a value) */
const OBJECT = /^(`(?:[^`]|``)+`|[A-Za-z0-9_$]+)(?:\s*\.\s*(`(?:[^`]|``)+`|[A-Za-z0-9_$]+))?/;

/** "alter table `shop`.`orders`": one statement's kind and object, nothing of its values */
export function describeStatement(sql: string): string {
  // MariaDB's per-statement settings prefix ("SET STATEMENT x = 1 FOR INSERT ...") describes the statement after it
  const s = sql.replace(/^(?:\s|\/\*[\s\S]*?\*\/)+/, "").replace(/^SET\s+STATEMENT\s+[^;]*?\s+FOR\s+(?=[A-Za-z])/i, "");
  for (const [re, kind] of KINDS) {
    const m = re.exec(s);
    if (!m) continue;
    if (["start transaction", "commit", "rollback", "set", "select", "use"].includes(kind)) return kind;
    const o = OBJECT.exec(s.slice(m[0].length));
    return o ? `${kind} ${o[2] ? `${o[1]}.${o[2]}` : o[1]}` : kind;
  }
  return "other statement";
}

/**
 * A query as the applier sends it (often several statements joined by ";\n"): the statements that touch a
 * table or define something, deduplicated, at most four; transaction control and the checkpoint are left out
 * unless nothing else is there.
 */
export function describeQuery(sql: string): string {
  const parts = sql.split(/;\n/);
  const seen: string[] = [];
  let bookkeeping = false;
  for (const p of parts) {
    const d = describeStatement(p);
    if (/`_datasync`|^(?:insert into|update|delete from|replace into) _datasync\./.test(d)) {
      bookkeeping = true;
      continue;
    }
    if (["start transaction", "commit", "rollback", "set", "use"].includes(d)) continue;
    if (!seen.includes(d)) seen.push(d);
  }
  if (seen.length === 0) return bookkeeping ? "checkpoint" : describeStatement(parts[0] ?? "");
  const shown = seen.slice(0, 4).join(", ");
  return seen.length > 4 ? `${shown} and ${seen.length - 4} more` : shown;
}

export interface StatementInFlight {
  /** describeQuery of the text sent */
  what: string;
  since: number;
}

export interface StuckApply {
  /** seconds since the applier last completed a step */
  seconds: number;
  /** what it awaits: "statement: alter table `shop`.`orders`", "a snapshot chunk (watermark limit)", ... */
  waitingOn: string;
  /** the statement in flight on the replica connection, if any */
  statement: StatementInFlight | null;
  /** the first check that found this stall (one warning per stall) */
  fresh: boolean;
}

export class ApplyWatch {
  #lastStep: number;
  #waiting = "starting";
  #inflight: StatementInFlight | null = null;
  #warned = false;
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
    this.#lastStep = now();
  }

  /** the applier made progress (a statement returned, a transaction was applied, a chunk written) */
  step(): void {
    this.#lastStep = this.#now();
    this.#warned = false;
  }

  /** what the applier awaits from now on (set before each await of the apply loop) */
  waiting(what: string): void {
    this.#waiting = what;
  }

  get waitingOn(): string {
    return this.#inflight ? `statement: ${this.#inflight.what}` : this.#waiting;
  }

  get statement(): StatementInFlight | null {
    return this.#inflight;
  }

  /** a new session: nothing in flight, the clock restarts */
  reset(): void {
    this.#inflight = null;
    this.#waiting = "starting";
    this.step();
  }

  /** tracks one query of the apply connection: in flight until it settles, a step when it does */
  track<T>(sql: string, p: Promise<T>): Promise<T> {
    // described when asked (a stall, the status), not per query: a batch's query is megabytes of SQL
    let what: string | null = null;
    const mine: StatementInFlight = {
      get what() {
        return (what ??= describeQuery(sql));
      },
      since: this.#now(),
    };
    this.#inflight = mine;
    const settle = () => {
      if (this.#inflight === mine) this.#inflight = null;
      this.step();
    };
    p.then(settle, settle);
    return p;
  }

  /** null unless there is work (queued or in flight) and no step for `limitMs` */
  check(work: boolean, limitMs: number): StuckApply | null {
    const now = this.#now();
    if (!work && !this.#inflight) {
      this.#lastStep = now;
      this.#warned = false;
      return null;
    }
    const ms = now - this.#lastStep;
    if (ms < limitMs) return null;
    const fresh = !this.#warned;
    this.#warned = true;
    return { seconds: Math.round(ms / 100) / 10, waitingOn: this.waitingOn, statement: this.#inflight, fresh };
  }
}

/**
 * The apply connection as the appliers see it, with every query tracked by `watch` (a Proxy: mysql2's
 * connection stays the object that runs the query; everything else passes through untouched).
 */
export function watchConn(conn: Conn, watch: ApplyWatch): Conn {
  return new Proxy(conn, {
    get(target, key, receiver) {
      if (key === "query" || key === "execute") {
        const f = (target as any)[key] as (...a: any[]) => Promise<any>;
        return (...args: any[]) => {
          const q = args[0];
          const sql = typeof q === "string" ? q : typeof q?.sql === "string" ? q.sql : "";
          return watch.track(sql, f.apply(target, args));
        };
      }
      const v = Reflect.get(target, key, receiver);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

/** the replica server's view of the stuck connection: PROCESSLIST's state, time and a summary of its text */
export async function processlistOf(side: Conn, threadId: number): Promise<{ state: string | null; time: number | null; info: string | null } | null> {
  const [rows] = await side.query<any[]>("SELECT STATE, TIME, LEFT(INFO, 200) AS INFO FROM information_schema.PROCESSLIST WHERE ID = ?", [threadId]);
  if (!rows.length) return null;
  const r = rows[0];
  return { state: r.STATE ?? null, time: r.TIME === null || r.TIME === undefined ? null : Number(r.TIME), info: r.INFO ? describeQuery(String(r.INFO)) : null };
}
