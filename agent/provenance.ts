// Provenance owns "is the checkpoint's source this server": the identity key stored with every checkpoint
// (identity.ts), and the older format `${flavor}:${uuid||server_id}@${hostname}` that earlier agents wrote,
// accepted as equal when it names the same server.
export function sameSourceId(stored: string, key: string): boolean {
  if (!stored || stored === key) return true;
  const legacy = /^(mysql|mariadb):([^@]+)@(.+)$/.exec(stored);
  if (!legacy) return false;
  const [, flavor, id, host] = legacy;
  if (flavor === "mysql") return key === `mysql:${id}`;
  // mariadb:<server_id>@<hostname>:<port><datadir>
  return key.startsWith(`mariadb:${id}@${host}:`);
}
