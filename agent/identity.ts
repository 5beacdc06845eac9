// Identity owns the one definition of "which server is this" (DESIGN.md "Server identity"), used by every
// check that compares servers: a replica is not the source nor another replica; a checkpoint's source.
// MySQL: @@server_uuid (unique per datadir). MariaDB has no server UUID: @@server_id with @@hostname,
// @@port and @@datadir together name one server process's data.
import type { Conn } from "./db.js";

export interface ServerIdentity {
  flavor: "mysql" | "mariadb";
  /** MySQL @@server_uuid; "" on MariaDB */
  uuid: string;
  serverId: number;
  hostname: string;
  port: number;
  datadir: string;
}

/** Reads the identity of the server behind a connection (no privilege beyond a login). */
export async function readServerIdentity(c: Pick<Conn, "query">): Promise<ServerIdentity> {
  const [rows] = await c.query("SELECT VERSION() AS v, @@server_id AS id, @@hostname AS h, @@port AS p, @@datadir AS d");
  const r = (rows as any[])[0];
  const flavor = /mariadb/i.test(String(r.v)) ? "mariadb" : "mysql";
  let uuid = "";
  if (flavor === "mysql") {
    const [u] = await c.query("SELECT @@server_uuid AS u");
    uuid = String((u as any[])[0].u);
  }
  return { flavor, uuid, serverId: Number(r.id), hostname: String(r.h), port: Number(r.p), datadir: String(r.d) };
}

/** A stable text form; equal keys ⇔ the same server. Stored with checkpoints (`source_id`). */
export function identityKey(id: ServerIdentity): string {
  if (id.flavor === "mysql") return `mysql:${id.uuid}`;
  return `mariadb:${id.serverId}@${id.hostname}:${id.port}${id.datadir}`;
}

export function sameServer(a: ServerIdentity, b: ServerIdentity): boolean {
  return identityKey(a) === identityKey(b);
}

/** For messages: what identifies the server, without credentials. */
export function describeIdentity(id: ServerIdentity): string {
  return id.flavor === "mysql"
    ? `server_uuid ${id.uuid}`
    : `server_id ${id.serverId} on host ${id.hostname}, port ${id.port}, datadir ${id.datadir}`;
}
