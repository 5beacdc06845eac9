// Db owns how the agent connects: mysql2 options from a config endpoint (TLS defaults, resolved
// password, type handling that keeps values byte-exact), and error classification (transient or not).
import mysql from "mysql2/promise";
import { readPem, resolvePassword, tlsModeOf, type Endpoint } from "./config.js";

export type Conn = mysql.Connection;

/**
 * The one place that turns an endpoint's `tls` into driver TLS options, for every connection the project
 * makes (queries, the binlog reader, snapshot, verify, repair, status, the provider's live checks).
 * - verify-identity: the chain against `ca` (else the system CAs) and the host name or IP against the
 *   certificate's names. mysql2 checks names only when `verifyIdentity` is set; it then runs node's
 *   tls.checkServerIdentity during the handshake, before any credential is sent. An IP host is checked
 *   against the IP SANs (node falls back to the socket's host when no SNI name is sent).
 * - verify-ca: the chain only; required: encryption, no verification. CA/cert/key are read here (a file
 *   path is re-read at each connect, so a renewed certificate is picked up).
 */
export function tlsOptions(e: Pick<Endpoint, "host" | "tls">, where: string): mysql.SslOptions | undefined {
  const mode = tlsModeOf(e);
  if (mode === "disabled") return undefined;
  const t = e.tls ?? {};
  const ssl: mysql.SslOptions & { verifyIdentity?: boolean } = {
    ca: t.ca === undefined ? undefined : readPem(t.ca, `${where}.tls.ca`),
    cert: t.cert === undefined ? undefined : readPem(t.cert, `${where}.tls.cert`),
    key: t.key === undefined ? undefined : readPem(t.key, `${where}.tls.key`),
    rejectUnauthorized: mode === "verify-ca" || mode === "verify-identity",
    verifyIdentity: mode === "verify-identity",
  };
  return ssl;
}

/** names a certificate is issued for: subjectAltName entries and the subject CN */
function certNames(cert: any): string {
  const names: string[] = [];
  if (typeof cert?.subjectaltname === "string" && cert.subjectaltname) names.push(...cert.subjectaltname.split(/,\s*/));
  const cn = cert?.subject?.CN;
  if (cn) names.push(`CN=${Array.isArray(cn) ? cn.join(",") : cn}`);
  return names.length ? names.join(", ") : "(no names)";
}

/**
 * A TLS failure of the handshake explained: the host, the certificate's names, the mode and the fix.
 * mysql2 reports every TLS failure with code HANDSHAKE_SSL_ERROR; node's own error stays in the object
 * (`reason`, `host`, `cert` for a name mismatch). Returns undefined for non-TLS errors.
 */
export function explainTlsError(err: any, e: Pick<Endpoint, "host" | "port" | "tls">): string | undefined {
  if (typeof err?.tlsExplained === "string") return err.tlsExplained;
  if (err?.code !== "HANDSHAKE_SSL_ERROR" && !/certificate|SSL|TLS|altnames/i.test(String(err?.message ?? ""))) return undefined;
  const mode = tlsModeOf(e);
  const target = `${e.host}:${e.port}`;
  if (err?.cert && (err?.reason || /altnames/i.test(String(err.message)))) {
    return `TLS: the certificate of ${target} is not issued for "${e.host}" (it names ${certNames(err.cert)}); tls.mode ${mode} checks the host name or IP against the certificate. Fix: connect with a host name the certificate names, have the server's certificate reissued with "${e.host}" in its subjectAltName, or (the chain is still checked) set tls.mode: verify-ca.`;
  }
  const msg = String(err?.message ?? err);
  if (/self[- ]signed|unable to (get|verify)|not trusted|UNABLE_TO|certificate chain/i.test(msg)) {
    return `TLS: the certificate of ${target} is not signed by a trusted CA (${msg}); tls.mode ${mode} checks the chain. Fix: set tls.ca to the CA that signed the server's certificate (a PEM file or PEM text).`;
  }
  if (/expired|not yet valid/i.test(msg)) return `TLS: the certificate of ${target} is not valid now (${msg}); renew the server's certificate.`;
  return `TLS with ${target} failed (${msg}); check tls.mode (${mode}) and tls.ca, and that the server has TLS enabled.`;
}

/** explainTlsError for a connection made from driver options (the binlog reader's zongji connections) */
export function explainDriverTlsError(err: any, o: mysql.ConnectionOptions): string | undefined {
  const ssl = o.ssl as (mysql.SslOptions & { verifyIdentity?: boolean }) | undefined;
  const mode = !ssl ? "disabled" : ssl.verifyIdentity ? "verify-identity" : ssl.rejectUnauthorized ? "verify-ca" : "required";
  return explainTlsError(err, { host: String(o.host), port: Number(o.port), tls: { mode } });
}

/** mysql2 connection options for an endpoint. `where` names it in errors ("source", "replicas[1]"). */
export function connectionOptions(e: Endpoint, where: string, extra: mysql.ConnectionOptions = {}): mysql.ConnectionOptions {
  const ssl = tlsOptions(e, where);
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
  let c: Conn;
  try {
    c = await mysql.createConnection(connectionOptions(e, where, extra));
  } catch (err: any) {
    const tls = explainTlsError(err, e);
    if (tls && err && typeof err === "object") {
      err.message = tls;
      err.tlsExplained = tls;
    }
    throw err;
  }
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
  const tls = explainTlsError(err, e);
  if (tls) return `${target}: ${tls.startsWith("TLS: ") ? tls.slice(5) : tls}`;
  return `${target}: ${err?.message ?? String(err)}`;
}
