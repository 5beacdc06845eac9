// Ddl owns what happens to a statement that arrives as a query event: which schema objects it touches,
// whether it is in scope, and what the replica gets (applied as is, held back like trigger DDL, created
// disabled like events, quarantined like a table without a primary key, or skipped like account
// statements). It also fingerprints the touched objects so a DDL interrupted by a crash is recognized.
import { createHash } from "node:crypto";
import type { Conn } from "./db.js";
import { quoteId } from "./db.js";
import { isAccountStatement, SYSTEM_SCHEMAS } from "./rules.js";

export type ObjectType = "table" | "view" | "database" | "procedure" | "function" | "trigger" | "event";
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
    };

const ID = "(?:`(?:[^`]|``)+`|[A-Za-z0-9_$\\u0080-\\uffff]+)";
const NAME = `${ID}(?:\\s*\\.\\s*${ID})?`;

function unquote(id: string): string {
  const t = id.trim();
  return t.startsWith("`") ? t.slice(1, -1).replace(/``/g, "`") : t;
}

function splitName(n: string, defaultDb: string): { db: string; name: string } {
  const parts = n.match(new RegExp(ID, "g")) ?? [n];
  return parts.length >= 2 ? { db: unquote(parts[0]), name: unquote(parts[1]) } : { db: defaultDb, name: unquote(parts[0]) };
}

function namesIn(list: string, defaultDb: string): { db: string; name: string }[] {
  return (list.match(new RegExp(NAME, "g")) ?? []).map((n) => splitName(n, defaultDb));
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

/** Replace string literals, comments and quoted identifiers by blanks so keyword searches do not see inside them. */
export function blankLiterals(sql: string): string {
  // length-preserving, so an index found in the result is valid in the original
  const keepEnds = (m: string) => m[0] + " ".repeat(Math.max(0, m.length - 2)) + m[m.length - 1];
  return sql
    .replace(/'(?:[^'\\]|\\.|'')*'/g, keepEnds)
    .replace(/"(?:[^"\\]|\\.|"")*"/g, keepEnds)
    .replace(/`(?:[^`]|``)*`/g, keepEnds)
    .replace(/\/\*[\s\S]*?\*\//g, (m) => " ".repeat(m.length))
    .replace(/(?:--\s|#)[^\n]*/g, (m) => " ".repeat(m.length));
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
export function parseDdl(sqlIn: string, defaultDb: string): Parsed | null {
  const sql = normalizeDdl(sqlIn);
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
    const blank = blankLiterals(m[2]);
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
function createHasPrimaryKey(body: string, defaultDb: string): { has: boolean | "like"; likeOf?: DdlObject } {
  const like = new RegExp(`^\\s*\\(?\\s*LIKE\\s+(${NAME})`, "i").exec(body);
  if (like) return { has: "like", likeOf: { type: "table", ...splitName(like[1], defaultDb) } };
  // strip string literals, comments and quoted identifiers before looking for the key clause
  return { has: /\bPRIMARY\s+KEY\b/i.test(blankLiterals(body)) };
}

export interface ScopeCheck {
  databases: Set<string>;
  inScope: (db: string, table: string) => boolean;
}

/** Decide what a replica gets for a standalone statement. */
export function planDdl(sql: string, defaultDb: string, scope: ScopeCheck): DdlPlan {
  if (isAccountStatement(sql)) return { kind: "skip", reason: "account" };
  const p = parseDdl(sql, defaultDb);
  if (!p) return { kind: "skip", reason: "not-ddl" };
  const dbs = new Set(p.objects.map((o) => o.db));
  if ([...dbs].some((d) => SYSTEM_SCHEMAS.includes(d.toLowerCase()) || d === "_datasync")) return { kind: "skip", reason: "system" };
  const inScopeObj = (o: DdlObject) =>
    o.type === "database" ? scope.databases.has(o.db) : o.type === "table" ? scope.inScope(o.db, o.name) : scope.databases.has(o.db);
  if (!p.objects.some(inScopeObj)) return { kind: "skip", reason: "out-of-scope" };
  const db = p.objects[0].db;
  if (p.type === "trigger") return { kind: "hold", db, objects: p.objects };
  const norm = normalizeDdl(sql);
  const plan: Extract<DdlPlan, { kind: "apply" }> = { kind: "apply", db, sql: norm, objects: p.objects, after: [] };
  if (p.type === "event" && p.verb !== "drop") {
    // Scheduled events run on the source; on a replica they are created disabled.
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
    const pk = createHasPrimaryKey(p.body ?? "", defaultDb);
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
  if (p.type === "table" && p.verb === "rename") plan.drops = p.objects.filter((_, i) => i % 2 === 0);
  if (p.type === "database" && p.verb === "drop") plan.drops = p.objects;
  return plan;
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
