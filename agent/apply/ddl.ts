// Ddl owns what happens to a statement that arrives as a query event: which schema objects it touches,
// whether it is in scope, and what the replica gets (applied as is, held back like trigger DDL, created
// disabled like events, quarantined like a table without a primary key, or skipped like account
// statements). It also fingerprints the touched objects so a DDL interrupted by a crash is recognized.
import { createHash } from "node:crypto";
import type { Conn } from "../db.js";
import { quoteId } from "../db.js";
import { BOOKKEEPING_SCHEMA, isAccountStatement, SYSTEM_SCHEMAS } from "../rules.js";

export type ObjectType = "table" | "view" | "database" | "procedure" | "function" | "trigger" | "event" | "sequence";
export interface DdlObject {
  type: ObjectType;
  db: string;
  name: string;
}

export type DdlPlan =
  | { kind: "skip"; reason: "account" | "system" | "out-of-scope" | "not-ddl" }
  | { kind: "hold"; db: string; objects: DdlObject[] }
  | {
      kind: "apply";
      db: string;
      sql: string;
      objects: DdlObject[];
      /** statements to run after the DDL (e.g. disable a replicated event) */
      after: string[];
      /** a CREATE TABLE: whether the definition carries a primary key ("like" = copy of another table) */
      creates?: { db: string; table: string; hasPrimaryKey: boolean | "like"; likeOf?: DdlObject };
      /** tables this statement removes (leave quarantine) */
      drops?: DdlObject[];
      /** tables renamed into the scope: seeded online from the source (DESIGN.md), like a table added to the filters */
      seeds?: DdlObject[];
      /** a view's CREATE/ALTER ("create") or DROP ("drop"): see viewDependencyMissing */
      view?: "create" | "drop";
    };

/** How the source session lexed the statement (its sql_mode): ANSI_QUOTES makes "…" an identifier, NO_BACKSLASH_ESCAPES makes \\ an ordinary character. */
export interface LexMode {
  ansiQuotes?: boolean;
  noBackslashEscapes?: boolean;
}

const ID_PLAIN = "(?:`(?:[^`]|``)+`|[A-Za-z0-9_$\\u0080-\\uffff]+)";
const ID_ANSI = '(?:`(?:[^`]|``)+`|"(?:[^"]|"")+"|[A-Za-z0-9_$\\u0080-\\uffff]+)';

/** the identifier and (db.)name patterns of a lexing mode */
function lexIds(mode: LexMode): { ID: string; NAME: string } {
  const ID = mode.ansiQuotes ? ID_ANSI : ID_PLAIN;
  return { ID, NAME: `${ID}(?:\\s*\\.\\s*${ID})?` };
}

function unquote(id: string): string {
  const t = id.trim();
  if (t.startsWith("`")) return t.slice(1, -1).replace(/``/g, "`");
  if (t.startsWith('"')) return t.slice(1, -1).replace(/""/g, '"');
  return t;
}

function splitNameIn(n: string, defaultDb: string, ID: string): { db: string; name: string } {
  const parts = n.match(new RegExp(ID, "g")) ?? [n];
  return parts.length >= 2 ? { db: unquote(parts[0]), name: unquote(parts[1]) } : { db: defaultDb, name: unquote(parts[0]) };
}

function namesInList(list: string, defaultDb: string, ids: { ID: string; NAME: string }): { db: string; name: string }[] {
  return (list.match(new RegExp(ids.NAME, "g")) ?? []).map((n) => splitNameIn(n, defaultDb, ids.ID));
}

/**
 * A CREATE or ALTER EVENT statement with its status clause DISABLE: an ENABLE / DISABLE [ON SLAVE|REPLICA] clause
 * of its head (before DO) replaced; a CREATE without one gets DISABLE where the clause goes (before COMMENT, else
 * before DO). An ALTER without one leaves the status as it is.
 */
export function eventDisabled(sql: string, verb: "create" | "alter", mode: LexMode = {}): string {
  const blank = blankLiterals(sql, mode);
  const doAt = /\bDO\b/i.exec(blank)?.index ?? blank.length;
  // the clauses after the event's name (an event may be named `enable`)
  const named = new RegExp(`^\\s*(?:CREATE|ALTER)\\b[\\s\\S]*?\\bEVENT\\s+(?:IF\\s+NOT\\s+EXISTS\\s+)?${lexIds(mode).NAME}`, "i").exec(sql);
  const from = named && named[0].length <= doAt ? named[0].length : 0;
  // an ALTER's new name is no status clause either (RENAME TO s.enable: ENABLE is not a reserved word)
  const head = blank.slice(from, doAt).replace(new RegExp(`\\bRENAME\\s+TO\\s+${lexIds(mode).NAME}`, "i"), (m) => " ".repeat(m.length));
  const st = /\b(?:ENABLE|DISABLE(?:\s+ON\s+(?:SLAVE|REPLICA))?)\b/i.exec(head);
  if (st) return `${sql.slice(0, from + st.index)}DISABLE${sql.slice(from + st.index + st[0].length)}`;
  if (verb === "alter" || doAt === blank.length) return sql;
  const c = /\bCOMMENT\b/i.exec(head);
  const at = c ? from + c.index : doAt;
  return `${sql.slice(0, at)}DISABLE ${sql.slice(at)}`;
}

/** Remove leading comments and the DEFINER clause (the definer account need not exist on a replica). */
export function normalizeDdl(sql: string): string {
  let s = sql.replace(/^\s*(?:\/\*(?!!)[\s\S]*?\*\/\s*|--[^\n]*\n\s*|#[^\n]*\n\s*)*/, "");
  // only the clause in the statement head (CREATE [OR REPLACE] [ALGORITHM=…] DEFINER=… VIEW|TRIGGER|…),
  // never an expression or a comment further on that happens to say "definer ="
  s = s.replace(
    /^((?:CREATE|ALTER)\s+(?:OR\s+REPLACE\s+)?(?:ALGORITHM\s*=\s*\w+\s+)?)DEFINER\s*=\s*(?:CURRENT_USER(?:\s*\(\s*\))?|(?:`[^`]*`|'[^']*'|"[^"]*"|[^\s@]+)(?:\s*@\s*(?:`[^`]*`|'[^']*'|"[^"]*"|[^\s]+))?)\s*/i,
    "$1",
  );
  return s;
}

/**
 * One pass over a statement as the server lexes it: string literals, quoted identifiers and comments,
 * each in the order they start (a quote inside a backticked name starts no string, a backtick inside a
 * string starts no name). Calls `span` for each; returns nothing. Executable comments (`/*!50100 … *\/`)
 * are code: only their markers are reported as comments.
 */
function scan(sql: string, mode: LexMode, span: (kind: "string" | "ident" | "comment" | "exec", start: number, end: number) => void): void {
  const n = sql.length;
  let i = 0;
  let inExec = false;
  while (i < n) {
    const c = sql[i];
    if (c === "'" || c === '"' || c === "`") {
      const start = i++;
      while (i < n) {
        const d = sql[i];
        if (d === "\\" && c !== "`" && !mode.noBackslashEscapes) {
          i += 2;
          continue;
        }
        if (d === c) {
          if (sql[i + 1] === c) {
            i += 2;
            continue;
          }
          break;
        }
        i++;
      }
      i = Math.min(n, i + 1);
      span(c === "`" || (c === '"' && mode.ansiQuotes) ? "ident" : "string", start, i);
      continue;
    }
    if (c === "/" && sql[i + 1] === "*") {
      if (sql[i + 2] === "!" || (sql[i + 2] === "M" && sql[i + 3] === "!")) {
        // executable comment: its marker (and version number) is not code, its body is
        const m = /^\/\*M?!\d*/.exec(sql.slice(i, i + 12))!;
        span("exec", i, i + m[0].length);
        i += m[0].length;
        inExec = true;
        continue;
      }
      const end = sql.indexOf("*/", i + 2);
      const stop = end < 0 ? n : end + 2;
      span("comment", i, stop);
      i = stop;
      continue;
    }
    if (inExec && c === "*" && sql[i + 1] === "/") {
      span("exec", i, i + 2);
      i += 2;
      inExec = false;
      continue;
    }
    if (c === "#" || (c === "-" && sql[i + 1] === "-" && (i + 2 >= n || /\s/.test(sql[i + 2])))) {
      const end = sql.indexOf("\n", i);
      const stop = end < 0 ? n : end;
      span("comment", i, stop);
      i = stop;
      continue;
    }
    i++;
  }
}

/** Replace string literals, comments and quoted identifiers by blanks so keyword searches do not see inside them. */
export function blankLiterals(sql: string, mode: LexMode = {}): string {
  // length-preserving, so an index found in the result is valid in the original
  const out = sql.split("");
  scan(sql, mode, (kind, start, end) => {
    const keepEnds = kind === "string" || kind === "ident";
    for (let k = start; k < end; k++) if (!keepEnds || (k !== start && k !== end - 1)) out[k] = " ";
  });
  return out.join("");
}

/**
 * Comments replaced by blanks (quoted names, strings and executable comments kept): the text the
 * statement's shape is read from.
 */
export function blankComments(sql: string, mode: LexMode = {}): string {
  const out = sql.split("");
  scan(sql, mode, (kind, start, end) => {
    if (kind === "comment") for (let k = start; k < end; k++) out[k] = " ";
  });
  return out.join("");
}

const PREFIX_OR_REPLACE = "(?:OR\\s+REPLACE\\s+)?";
const VIEW_OPTS = "(?:ALGORITHM\\s*=\\s*\\w+\\s+)?(?:SQL\\s+SECURITY\\s+\\w+\\s+)?";
const IFNE = "(?:IF\\s+NOT\\s+EXISTS\\s+)?";
const IFE = "(?:IF\\s+EXISTS\\s+)?";

interface Parsed {
  verb: "create" | "alter" | "drop" | "rename" | "truncate";
  type: ObjectType | "index";
  objects: { type: ObjectType; db: string; name: string }[];
  /** for CREATE TABLE */
  body?: string;
}

/** Parse the DDL forms the agent syncs; null for anything else. */
export function parseDdl(sqlIn: string, defaultDb: string, mode: LexMode = {}): Parsed | null {
  // the shape is read with comments blanked (`CREATE TABLE /* note */ t` is a CREATE TABLE of t)
  const sql = normalizeDdl(blankComments(sqlIn, mode)).replace(/^\s+/, "");
  const ids = lexIds(mode);
  const { ID, NAME } = ids;
  const splitName = (n: string, db: string) => splitNameIn(n, db, ID);
  const namesIn = (list: string, db: string) => namesInList(list, db, ids);
  let m: RegExpExecArray | null;
  const re = (s: string) => new RegExp(`^${s}`, "is");
  if ((m = re(`CREATE\\s+${PREFIX_OR_REPLACE}(?:TEMPORARY\\s+)?TABLE\\s+${IFNE}(${NAME})([\\s\\S]*)$`).exec(sql))) {
    const o = splitName(m[1], defaultDb);
    return { verb: "create", type: "table", objects: [{ type: "table", ...o }], body: m[2] };
  }
  if ((m = re(`ALTER\\s+(?:ONLINE\\s+)?(?:IGNORE\\s+)?TABLE\\s+${IFE}(${NAME})([\\s\\S]*)$`).exec(sql))) {
    const o = splitName(m[1], defaultDb);
    const objects: Parsed["objects"] = [{ type: "table", ...o }];
    // search the clause list with literals blanked (a COMMENT may say "rename to"), then read the name from the original
    const blank = blankLiterals(m[2], mode);
    const rn = /\bRENAME\s+(?!COLUMN\b|INDEX\b|KEY\b)(?:TO\s+|AS\s+)?/i.exec(blank);
    if (rn) {
      const nm = new RegExp(`^(${NAME})`).exec(m[2].slice(rn.index + rn[0].length));
      if (nm) objects.push({ type: "table", ...splitName(nm[1], defaultDb) });
    }
    return { verb: "alter", type: "table", objects };
  }
  if ((m = re(`DROP\\s+(?:TEMPORARY\\s+)?TABLES?\\s+${IFE}([\\s\\S]*?)(?:\\s+(?:RESTRICT|CASCADE))?\\s*(?:\\/\\*.*\\*\\/)?\\s*;?\\s*$`).exec(sql))) {
    return { verb: "drop", type: "table", objects: namesIn(m[1].replace(/\bWAIT\s+\d+|\bNOWAIT\b/gi, ""), defaultDb).map((o) => ({ type: "table" as const, ...o })) };
  }
  if ((m = re(`RENAME\\s+TABLES?\\s+([\\s\\S]*)$`).exec(sql))) {
    const pair = new RegExp(`(${NAME})\\s+TO\\s+(${NAME})`, "gi");
    const objects: Parsed["objects"] = [];
    for (const p of m[1].matchAll(pair)) objects.push({ type: "table", ...splitName(p[1], defaultDb) }, { type: "table", ...splitName(p[2], defaultDb) });
    return { verb: "rename", type: "table", objects };
  }
  if ((m = re(`TRUNCATE\\s+(?:TABLE\\s+)?(${NAME})`).exec(sql))) {
    return { verb: "truncate", type: "table", objects: [{ type: "table", ...splitName(m[1], defaultDb) }] };
  }
  if ((m = re(`CREATE\\s+${PREFIX_OR_REPLACE}(?:UNIQUE\\s+|FULLTEXT\\s+|SPATIAL\\s+)?INDEX\\s+${IFNE}${ID}\\s+(?:USING\\s+\\w+\\s+)?ON\\s+(${NAME})`).exec(sql))) {
    return { verb: "create", type: "index", objects: [{ type: "table", ...splitName(m[1], defaultDb) }] };
  }
  if ((m = re(`DROP\\s+INDEX\\s+${IFE}${ID}\\s+ON\\s+(${NAME})`).exec(sql))) {
    return { verb: "drop", type: "index", objects: [{ type: "table", ...splitName(m[1], defaultDb) }] };
  }
  if ((m = re(`(CREATE|DROP|ALTER)\\s+${PREFIX_OR_REPLACE}(?:DATABASE|SCHEMA)\\b\\s*(?:IF\\s+(?:NOT\\s+)?EXISTS\\s+)?(${ID})?`).exec(sql))) {
    // ALTER DATABASE [name] options: without a name it is the default database
    const optionWord = m[2] && /^(DEFAULT|CHARACTER|CHARSET|COLLATE|COMMENT|READ|ENCRYPTION|UPGRADE)$/i.test(m[2]);
    const name = m[2] && !optionWord ? unquote(m[2]) : defaultDb;
    return { verb: m[1].toLowerCase() as Parsed["verb"], type: "database", objects: [{ type: "database", db: name, name }] };
  }
  // MariaDB sequences: tables of one row to the table filters, their state streams as row writes
  if ((m = re(`(CREATE|ALTER)\\s+${PREFIX_OR_REPLACE}(?:TEMPORARY\\s+)?SEQUENCE\\s+(?:IF\\s+(?:NOT\\s+)?EXISTS\\s+)?(${NAME})`).exec(sql))) {
    return { verb: m[1].toLowerCase() as Parsed["verb"], type: "sequence", objects: [{ type: "sequence", ...splitName(m[2], defaultDb) }] };
  }
  if ((m = re(`DROP\\s+(?:TEMPORARY\\s+)?SEQUENCE\\s+${IFE}([\\s\\S]*?)\\s*;?\\s*$`).exec(sql))) {
    return { verb: "drop", type: "sequence", objects: namesIn(m[1], defaultDb).map((o) => ({ type: "sequence" as const, ...o })) };
  }
  if ((m = re(`(CREATE|ALTER)\\s+${PREFIX_OR_REPLACE}${VIEW_OPTS}VIEW\\s+${IFNE}(${NAME})`).exec(sql))) {
    return { verb: m[1].toLowerCase() as Parsed["verb"], type: "view", objects: [{ type: "view", ...splitName(m[2], defaultDb) }] };
  }
  if ((m = re(`DROP\\s+VIEW\\s+${IFE}([\\s\\S]*?)(?:\\s+(?:RESTRICT|CASCADE))?\\s*;?\\s*$`).exec(sql))) {
    return { verb: "drop", type: "view", objects: namesIn(m[1], defaultDb).map((o) => ({ type: "view" as const, ...o })) };
  }
  if ((m = re(`(CREATE|ALTER|DROP)\\s+${PREFIX_OR_REPLACE}(?:AGGREGATE\\s+)?(PROCEDURE|FUNCTION|TRIGGER|EVENT)\\s+(?:IF\\s+(?:NOT\\s+)?EXISTS\\s+)?(${NAME})`).exec(sql))) {
    const type = m[2].toLowerCase() as ObjectType;
    return { verb: m[1].toLowerCase() as Parsed["verb"], type, objects: [{ type, ...splitName(m[3], defaultDb) }] };
  }
  return null;
}

/** Does a CREATE TABLE body define a primary key? "like" for CREATE TABLE … LIKE other. */
function createHasPrimaryKey(body: string, defaultDb: string, mode: LexMode): { has: boolean | "like"; likeOf?: DdlObject } {
  const { ID, NAME } = lexIds(mode);
  const like = new RegExp(`^\\s*\\(?\\s*LIKE\\s+(${NAME})`, "i").exec(body);
  if (like) return { has: "like", likeOf: { type: "table", ...splitNameIn(like[1], defaultDb, ID) } };
  // strip string literals, comments and quoted identifiers before looking for the key clause. A hint
  // only: the applier decides from the replica's own table after running the statement (a column
  // attribute spelled `KEY` alone is a primary key too)
  return { has: /\bPRIMARY\s+KEY\b/i.test(blankLiterals(body, mode)) };
}

export interface ScopeCheck {
  databases: Set<string>;
  inScope: (db: string, table: string) => boolean;
}

/** Decide what a replica gets for a standalone statement. */
export function planDdl(sql: string, defaultDb: string, scope: ScopeCheck, mode: LexMode = {}): DdlPlan {
  if (isAccountStatement(sql)) return { kind: "skip", reason: "account" };
  const p = parseDdl(sql, defaultDb, mode);
  const { ID, NAME } = lexIds(mode);
  const splitName = (n: string, db: string) => splitNameIn(n, db, ID);
  if (!p) return { kind: "skip", reason: "not-ddl" };
  const dbs = new Set(p.objects.map((o) => o.db));
  if ([...dbs].some((d) => SYSTEM_SCHEMAS.includes(d.toLowerCase()) || d === BOOKKEEPING_SCHEMA)) return { kind: "skip", reason: "system" };
  const inScopeObj = (o: DdlObject) =>
    o.type === "database" ? scope.databases.has(o.db) : o.type === "table" || o.type === "sequence" ? scope.inScope(o.db, o.name) : scope.databases.has(o.db);
  if (!p.objects.some(inScopeObj)) return { kind: "skip", reason: "out-of-scope" };
  const db = p.objects[0].db;
  if (p.type === "trigger") return { kind: "hold", db, objects: p.objects };
  const norm = normalizeDdl(sql);
  const plan: Extract<DdlPlan, { kind: "apply" }> = { kind: "apply", db, sql: norm, objects: p.objects, after: [] };
  if (p.type === "event" && p.verb !== "drop") {
    // Scheduled events run on the source; on a replica they are created disabled: in the statement itself (an
    // event created enabled and disabled after can run at once on the replica's scheduler, whose end of that run
    // writes its status back: MySQL showed ENABLED after the ALTER), and by the ALTER after (a rename, a resumed DDL)
    if (p.verb === "create" || p.verb === "alter") plan.sql = eventDisabled(norm, p.verb, mode);
    const o = p.objects[0];
    plan.after.push(`ALTER EVENT ${quoteId(o.db)}.${quoteId(o.name)} DISABLE`);
    const rn = new RegExp(`\\bRENAME\\s+TO\\s+(${NAME})`, "i").exec(norm);
    if (rn) {
      const n = splitName(rn[1], defaultDb);
      plan.after[0] = `ALTER EVENT ${quoteId(n.db)}.${quoteId(n.name)} DISABLE`;
    }
  }
  if (p.type === "table" && p.verb === "create") {
    const o = p.objects[0];
    const pk = createHasPrimaryKey(p.body ?? "", defaultDb, mode);
    plan.creates = { db: o.db, table: o.name, hasPrimaryKey: pk.has, likeOf: pk.likeOf };
  }
  if (p.type === "table" && p.verb === "drop") {
    plan.drops = p.objects;
    const inScope = p.objects.filter(inScopeObj);
    if (inScope.length < p.objects.length) {
      // never drop a replica's table that is not synced: keep only the names in scope
      plan.sql = `DROP TABLE IF EXISTS ${inScope.map((o) => `${quoteId(o.db)}.${quoteId(o.name)}`).join(", ")}`;
      plan.objects = inScope;
      plan.drops = inScope;
    }
  }
  if (p.type === "table" && p.verb === "alter" && p.objects.length > 1) plan.drops = [p.objects[0]];
  if (p.type === "table" && (p.verb === "rename" || (p.verb === "alter" && p.objects.length > 1))) {
    if (p.verb === "rename") plan.drops = p.objects.filter((_, i) => i % 2 === 0);
    // Across the scope (a staging swap with an excluded stage table, a move to an unsynced database): a
    // table renamed out of the scope stops syncing (dropped from the replica), one renamed into it is
    // seeded online (with its definition after the statement: an ALTER's other clauses come with it);
    // renames within the scope run as one statement, in the source's order (an ALTER … RENAME as is).
    const pairs: [DdlObject, DdlObject][] = [];
    for (let i = 0; i + 1 < p.objects.length; i += 2) pairs.push([p.objects[i], p.objects[i + 1]]);
    if (pairs.some(([a, b]) => !inScopeObj(a) || !inScopeObj(b))) {
      const q = (o: DdlObject) => `${quoteId(o.db)}.${quoteId(o.name)}`;
      const stmts: string[] = [];
      const seeds: DdlObject[] = [];
      for (const [a, b] of pairs) {
        if (inScopeObj(a) && inScopeObj(b)) stmts.push(`RENAME TABLE ${q(a)} TO ${q(b)}`);
        else if (inScopeObj(a)) stmts.push(`DROP TABLE IF EXISTS ${q(a)}`);
        else if (inScopeObj(b)) {
          stmts.push(`DROP TABLE IF EXISTS ${q(b)}`);
          seeds.push(b);
        }
      }
      plan.sql = stmts.join(";\n");
      if (seeds.length) plan.seeds = seeds;
    }
  }
  if (p.type === "database" && p.verb === "drop") plan.drops = p.objects;
  if (p.type === "view") plan.view = p.verb === "drop" ? "drop" : "create";
  if (p.type === "sequence" && p.verb === "drop") {
    const inScope = p.objects.filter(inScopeObj);
    // never drop a replica's sequence that is not synced
    if (inScope.length < p.objects.length) plan.sql = `DROP SEQUENCE IF EXISTS ${inScope.map((o) => `${quoteId(o.db)}.${quoteId(o.name)}`).join(", ")}`;
    plan.objects = inScope;
  }
  return plan;
}

/**
 * A view's CREATE/ALTER failed because it selects from something the replica does not hold by design (a
 * database outside the synced ones, an excluded table, a function of another database): names that
 * object, else null (a failure the sync itself caused, e.g. a synced table missing: the replica diverged).
 * Native replication would stop there; a view carries no rows, so the sync leaves it out and reports it
 * rather than stopping the replica's data (agent/README.md, "Views over objects outside the scope").
 */
export function viewDependencyMissing(err: { errno?: number; sqlMessage?: string; message?: string }, scope: ScopeCheck): string | null {
  const msg = String(err.sqlMessage ?? err.message ?? "");
  let m: RegExpExecArray | null;
  if (err.errno === 1049 && (m = /Unknown database '((?:[^']|'')*)'/.exec(msg)) && !scope.databases.has(m[1])) return `database \`${m[1]}\``;
  if (err.errno === 1146 && (m = /Table '((?:[^'.]|'')*)\.((?:[^']|'')*)' doesn't exist/.exec(msg)) && !scope.inScope(m[1], m[2])) return `table \`${m[1]}\`.\`${m[2]}\``;
  if (err.errno === 1305 && (m = /FUNCTION (\S+?)\.(\S+) does not exist/.exec(msg)) && !scope.databases.has(m[1])) return `function \`${m[1]}\`.\`${m[2]}\``;
  return null;
}

async function showCreate(c: Conn, o: DdlObject): Promise<string> {
  const q = o.type === "database" ? `SHOW CREATE DATABASE ${quoteId(o.db)}` : `SHOW CREATE ${o.type.toUpperCase()} ${quoteId(o.db)}.${quoteId(o.name)}`;
  try {
    const [rows] = await c.query<any[]>(q);
    const r = rows[0] ?? {};
    // the definition column's name varies by object type; AUTO_INCREMENT counters change with data
    return Object.entries(r)
      .filter(([k]) => /^Create /i.test(k) || /^(SQL Original Statement|Statement)$/i.test(k))
      .map(([, v]) => String(v).replace(/\sAUTO_INCREMENT=\d+/, ""))
      .join("\n");
  } catch (e: any) {
    // 1049 unknown database, 1146 no such table, 1305 no such routine, 1360 no such trigger, 1539 unknown event
    if ([1049, 1146, 1305, 1360, 1539, 1356].includes(e?.errno)) return "<absent>";
    throw e;
  }
}

/** A hash of the definitions of the objects a DDL touches: changes exactly when the DDL took effect. */
export async function fingerprint(c: Conn, objects: DdlObject[]): Promise<string> {
  const h = createHash("sha256");
  for (const o of objects) h.update(`${o.type}:${o.db}.${o.name}=${await showCreate(c, o)}\n`);
  return h.digest("hex");
}
