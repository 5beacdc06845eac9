// Db owns how the agent connects: mysql2 options from a config endpoint (TLS defaults, resolved
// password, type handling that keeps values byte-exact), and error classification (transient or not).
import { readFileSync, existsSync } from "node:fs";
import mysql from "mysql2/promise";
import { resolvePassword, tlsModeOf, type Endpoint } from "./config.js";

export type Conn = mysql.Connection;

function pem(v: string | undefined): string | undefined {
  if (v === undefined) return undefined;
  if (v.includes("-----BEGIN")) return v;
  if (existsSync(v)) return readFileSync(v, "utf8");
  return v;
}

/** mysql2 connection options for an endpoint. `where` names it in errors ("source", "replicas[1]"). */
export function connectionOptions(e: Endpoint, where: string, extra: mysql.ConnectionOptions = {}): mysql.ConnectionOptions {
  const mode = tlsModeOf(e);
  let ssl: mysql.SslOptions | undefined;
  if (mode !== "disabled") {
    ssl = {
      ca: pem(e.tls?.ca),
      cert: pem(e.tls?.cert),
      key: pem(e.tls?.key),
      rejectUnauthorized: mode === "verify-ca" || mode === "verify-identity",
      // mysql2 checks the host name or IP against the certificate only when asked (it ignores a
      // checkServerIdentity given here): without this, verify-identity was verify-ca
      verifyIdentity: mode === "verify-identity",
    };
  }
  return {
    host: e.host,
    port: e.port,
    user: e.user,
    password: resolvePassword(e, where),
    ssl,
    connectTimeout: 5000,
    supportBigNumbers: true,
    bigNumberStrings: true,
    dateStrings: true,
    jsonStrings: true,
    timezone: "Z",
    charset: "UTF8MB4_GENERAL_CI",
    multipleStatements: false,
    // the applier sends large prebuilt statements: skip mysql2's placeholder scan when there are no values
    queryFormat: (sql: string, values: unknown) => (values === undefined || (Array.isArray(values) && values.length === 0) ? sql : mysql.format(sql, values as any[], false, "Z")),
    ...extra,
  };
}

export async function connect(e: Endpoint, where: string, extra: mysql.ConnectionOptions = {}): Promise<Conn> {
  const c = await mysql.createConnection(connectionOptions(e, where, extra));
  // Values are written and read in UTC so TIMESTAMP columns are byte-exact across servers.
  await c.query("SET time_zone = '+00:00', sql_mode = 'NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'");
  return c;
}

/** MariaDB/MySQL error numbers that a retry can fix (network, locks, server going away or read-only). */
const TRANSIENT_ERRNO = new Set([
  1040, // too many connections
  1053, // server shutdown in progress
  1205, // lock wait timeout
  1213, // deadlock
  1290, // --read-only (failover in progress)
  1927, // connection killed (MariaDB)
  2002, 2003, 2006, 2013, 2055, // client: cannot connect / gone away / lost connection
  4031, // client inactivity disconnect (MySQL 8)
  1836, // read-only mode (MariaDB)
  1152, 1158, 1159, 1160, 1161, // aborted connection / network read/write errors
]);

const TRANSIENT_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "EHOSTUNREACH", "ENETUNREACH", "PROTOCOL_CONNECTION_LOST", "ER_SERVER_SHUTDOWN", "EAI_AGAIN", "PROTOCOL_SEQUENCE_TIMEOUT"]);

/** Whether an error is worth a retry. Match on errno first: mysql2 mislabels some MariaDB codes. */
export function isTransient(err: any): boolean {
  if (!err) return false;
  if (typeof err.errno === "number" && TRANSIENT_ERRNO.has(err.errno)) return true;
  if (typeof err.code === "string" && TRANSIENT_CODES.has(err.code)) return true;
  if (err.fatal === true && typeof err.errno !== "number") return true;
  if (/Connection lost|closed state|ECONNRESET|socket hang up/i.test(String(err.message ?? ""))) return true;
  return false;
}

/** errors that mean the credentials are wrong (no retry helps at start) */
export function isAuthError(err: any): boolean {
  return err?.errno === 1045 || err?.errno === 1044 || err?.code === "ER_ACCESS_DENIED_ERROR";
}

/**
 * The binlog status row (File, Position, and on MySQL Executed_Gtid_Set), undefined without a binlog.
 * MySQL 8.4 renamed the statement. The timeout keeps a half-open connection from hanging the caller.
 */
export async function binlogStatus(c: Conn, timeout = 10_000): Promise<any | undefined> {
  try {
    const [rows] = await c.query<any[]>({ sql: "SHOW MASTER STATUS", timeout });
    return rows[0];
  } catch (e: any) {
    if (e?.errno !== 1064) throw e;
    const [rows] = await c.query<any[]>({ sql: "SHOW BINARY LOG STATUS", timeout });
    return rows[0];
  }
}

export function quoteId(name: string): string {
  return "`" + name.replace(/`/g, "``") + "`";
}

export function qualified(db: string, table: string): string {
  return `${quoteId(db)}.${quoteId(table)}`;
}

/** A short description of a connection error for messages (never includes the password). */
export function describeConnError(err: any, where: string, e: Endpoint): string {
  const target = `${where} (${e.user}@${e.host}:${e.port})`;
  if (isAuthError(err)) return `${target}: access denied; check the user and password (password, passwordEnv or passwordFile) and that the account may connect from this host`;
  if (err?.code === "ECONNREFUSED") return `${target}: connection refused; is the server running and listening on port ${e.port}?`;
  if (err?.code === "ETIMEDOUT" || err?.code === "EHOSTUNREACH") return `${target}: unreachable (${err.code}); check the host, port, firewall rules`;
  if (err?.code === "ENOTFOUND" || err?.code === "EAI_AGAIN") return `${target}: host name ${e.host} does not resolve`;
  if (/SSL|TLS|certificate/i.test(String(err?.message))) return `${target}: TLS failed (${err.message}); check tls.mode and tls.ca`;
  return `${target}: ${err?.message ?? String(err)}`;
}
