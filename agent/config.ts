// Config owns the agent configuration: schema (DESIGN.md), loading from a file or DATASYNC_CONFIG,
// validation once at start (every problem with the path of its key), and password resolution.
import { readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import YAML from "yaml";
import { z } from "zod";
import { checkDatabases, checkTopology, GROUP_RE, REPLICA_NAME_RE, tlsOffByDefault } from "./rules.js";
import { ConfigError } from "./errors.js";

/** ConfigError stays importable from here: deployed providers load datasync/agent/config (test/unit/stable-paths) */
export { ConfigError };

export const TLS_MODES = ["disabled", "required", "verify-ca", "verify-identity"] as const;
export type TlsMode = (typeof TLS_MODES)[number];

const tlsSchema = z.strictObject({
  mode: z.enum(TLS_MODES).optional(),
  ca: z.string().min(1).optional(),
  cert: z.string().min(1).optional(),
  key: z.string().min(1).optional(),
});

const endpointFields = {
  host: z.string().min(1),
  port: z.number().int().min(1).max(65535).default(3306),
  user: z.string().min(1).max(80),
  password: z.string().optional(),
  passwordEnv: z.string().min(1).optional(),
  passwordFile: z.string().min(1).optional(),
  tls: tlsSchema.optional(),
};

const oneSecret = (e: { password?: string; passwordEnv?: string; passwordFile?: string }) =>
  [e.password, e.passwordEnv, e.passwordFile].filter((x) => x !== undefined).length <= 1;
const secretMsg = { message: "give at most one of password, passwordEnv, passwordFile" };

const sourceSchema = z
  .strictObject({ ...endpointFields, serverId: z.number().int().min(1).max(4294967295).optional() })
  .refine(oneSecret, secretMsg);

const replicaSchema = z
  .strictObject({
    name: z.string().regex(REPLICA_NAME_RE, "a replica name is 1-63 letters, digits, '_', '.', '-', starting with a letter or digit"),
    ...endpointFields,
  })
  .refine(oneSecret, secretMsg);

export const configSchema = z.strictObject({
  group: z.string().regex(GROUP_RE, "a group name matches [a-z0-9][a-z0-9-]{0,39}"),
  source: sourceSchema,
  replicas: z.array(replicaSchema).min(1, "declare at least one replica").max(5, "at most 5 replicas per primary"),
  databases: z.array(z.string().min(1)).min(1, "list at least one database"),
  tables: z
    .strictObject({ include: z.array(z.string().min(1)).optional(), exclude: z.array(z.string().min(1)).optional() })
    .optional(),
  http: z.strictObject({ listen: z.string().regex(/^(\[[0-9a-fA-F:]+\]|[^:\s]+):\d{1,5}$/, "host:port, e.g. 127.0.0.1:9464").default("127.0.0.1:9464") }).default({ listen: "127.0.0.1:9464" }),
  readyLagSeconds: z.number().positive().max(86400).default(30),
  /** extension: how source transactions are grouped into target transactions */
  apply: z
    .strictObject({
      maxRows: z.number().int().min(1).max(1_000_000).default(20_000),
      maxBytes: z.number().int().min(1024).max(1 << 30).default(8 << 20),
      queueBytes: z.number().int().min(1 << 20).max(1 << 30).default(16 << 20),
      /** replicas at the same position share one binlog connection and one decode (source/shared-stream.ts); false: one reader per replica */
      sharedStream: z.boolean().default(true),
      /**
       * parallel apply: the next batch runs on a second connection while the current one commits, where the two
       * commute (independent tables, no key in both; apply/applier.ts); false: one connection per replica
       */
      parallel: z.boolean().default(true),
      /** a replica with work queued whose applier completes no step for this long is reported (warning, metric, status) */
      stuckSeconds: z.number().min(1).max(86400).default(60),
      /**
       * the shared binlog stream is read and decoded on a thread of its own (source/reader-thread.ts), so building and
       * applying keep the main thread; for machines with more than two cores (on two it costs more than it saves,
       * bench/results.md); needs sharedStream
       */
      readerThread: z.boolean().default(false),
    })
    .refine((a) => !a.readerThread || a.sharedStream, {
      message: "apply.readerThread needs apply.sharedStream: true (the reader thread reads the shared stream); set sharedStream: true or readerThread: false",
      path: ["readerThread"],
    })
    .default({ maxRows: 20_000, maxBytes: 8 << 20, queueBytes: 16 << 20, sharedStream: true, parallel: true, stuckSeconds: 60, readerThread: false }),
  /** extension: heartbeat interval (moves checkpoints on an idle or filtered-out source) */
  heartbeatSeconds: z.number().min(0.1).max(3600).default(1),
  /** extension: a binlog connection silent this long while the source moved is restarted; default max(30, 5 × heartbeatSeconds) */
  stallSeconds: z.number().min(1).max(3600).optional(),
  /** extension: online snapshot settings */
  snapshot: z
    .strictObject({
      chunkRows: z.number().int().min(10).max(1_000_000).default(10_000),
      rowsPerSecond: z.number().int().min(0).default(0),
      /** connections writing each chunk in parallel on the replica */
      writers: z.number().int().min(1).max(8).default(2),
      /** locking chunk reads (LOCK IN SHARE MODE): close a visibility race, but block and can deadlock source writers */
      lockingReads: z.boolean().default(false),
    })
    .default({ chunkRows: 10_000, rowsPerSecond: 0, writers: 2, lockingReads: false }),
  logLevel: z.enum(["fatal", "error", "warn", "info", "debug", "trace"]).default("info"),
});

export type RawConfig = z.input<typeof configSchema>;
export type Config = z.output<typeof configSchema>;
export type SourceConfig = Config["source"];
export type ReplicaConfig = Config["replicas"][number];
export type Endpoint = SourceConfig | ReplicaConfig;

function pathOf(path: PropertyKey[]): string {
  let s = "";
  for (const p of path) s += typeof p === "number" ? `[${p}]` : s ? `.${String(p)}` : String(p);
  return s || "(root)";
}

/** Validate a parsed object; throws ConfigError listing every problem with its key path. */
export function validateConfig(raw: unknown): Config {
  const r = configSchema.safeParse(raw);
  if (!r.success) {
    const problems = r.error.issues.map((i) => {
      if (i.code === "unrecognized_keys") {
        const base = i.path.length ? `${pathOf(i.path)}.` : "";
        const where = i.path.length ? pathOf(i.path) : "the config";
        const many = i.keys.length > 1;
        return `${i.keys.map((k) => `${base}${k}`).join(", ")}: unknown key${many ? "s" : ""} ${i.keys.map((k) => `"${k}"`).join(", ")} in ${where}; remove ${many ? "them" : "it"} or fix the spelling (see the agent config in the README)`;
      }
      if (i.code === "invalid_type" && /received undefined/.test(i.message)) {
        return `${pathOf(i.path)}: required key is missing`;
      }
      return `${pathOf(i.path)}: ${i.message}`;
    });
    throw new ConfigError(problems);
  }
  const c = r.data;
  const problems = [
    ...checkTopology(c.source, c.replicas).map((f) => f.message),
    ...checkDatabases(c.databases).map((f) => f.message),
    ...checkTlsMaterial(c.source, "source"),
    ...c.replicas.flatMap((r, i) => checkTlsMaterial(r, `replicas[${i}]`)),
  ];
  if (problems.length) throw new ConfigError(problems);
  return deepFreeze(c);
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === "object") {
    Object.values(o).forEach(deepFreeze);
    Object.freeze(o);
  }
  return o;
}

/** Load from a file path (JSON or YAML) or from the DATASYNC_CONFIG env variable (JSON or YAML text). */
export function loadConfig(file?: string, env: NodeJS.ProcessEnv = process.env): Config {
  let text: string;
  let origin: string;
  if (file) {
    try {
      text = readFileSync(file, "utf8");
    } catch (e: any) {
      throw new ConfigError([`cannot read the config file ${file}: ${e.code ?? e.message}; pass an existing file with --config`]);
    }
    origin = file;
  } else if (env.DATASYNC_CONFIG) {
    text = env.DATASYNC_CONFIG;
    origin = "DATASYNC_CONFIG";
  } else {
    throw new ConfigError(["no configuration: pass --config FILE or set DATASYNC_CONFIG to the config's JSON"]);
  }
  let raw: unknown;
  try {
    raw = /^\s*\{/.test(text) ? JSON.parse(text) : YAML.parse(text);
  } catch (e: any) {
    throw new ConfigError([`${origin} is neither valid JSON nor YAML: ${e.message.split("\n")[0]}`]);
  }
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw new ConfigError([`${origin}: the configuration must be an object with group, source, replicas and databases`]);
  }
  return validateConfig(raw);
}

/** Resolve an endpoint's password (inline, env variable or file). Never logged. */
export function resolvePassword(e: Endpoint, where: string, env: NodeJS.ProcessEnv = process.env): string {
  if (e.password !== undefined) return e.password;
  if (e.passwordEnv !== undefined) {
    const v = env[e.passwordEnv];
    if (v === undefined) throw new ConfigError([`${where}.passwordEnv: the environment variable ${e.passwordEnv} is not set; export it or use passwordFile`]);
    return v;
  }
  if (e.passwordFile !== undefined) {
    try {
      return readFileSync(e.passwordFile, "utf8").replace(/\r?\n$/, "");
    } catch (err: any) {
      throw new ConfigError([`${where}.passwordFile: cannot read ${e.passwordFile} (${err.code ?? err.message}); point it at a readable file`]);
    }
  }
  return "";
}

/** TLS is off by default only on 127.0.0.1, localhost and ::1 (DESIGN.md); every other host gets verify-identity. */
export function tlsModeOf(e: Pick<Endpoint, "host" | "tls">): TlsMode {
  return e.tls?.mode ?? (tlsOffByDefault(e.host) ? "disabled" : "verify-identity");
}

const PEM_RE = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]+?-----END \1-----/;

/** PEM text itself (inline), as opposed to the path of a file. */
export function isPemText(v: string): boolean {
  return v.includes("-----BEGIN");
}

/**
 * The PEM of a tls.ca/cert/key value: the value itself when it is PEM text, else the contents of the file
 * it names. Throws (naming `path` and the fix, never the value of a key) when it is neither.
 */
export function readPem(value: string, path: string): string {
  const shown = path.endsWith(".key") ? "the value" : JSON.stringify(value.length > 80 ? `${value.slice(0, 77)}...` : value);
  const fix = `give the path of a readable PEM file or the PEM text itself (-----BEGIN ...-----); the provider inlines file contents for remote agents`;
  if (isPemText(value)) {
    if (!PEM_RE.test(value)) throw new ConfigError([`${path}: the PEM text is incomplete (no matching -----END ...----- line); ${fix}`]);
    return value;
  }
  let text: string;
  try {
    text = readFileSync(value, "utf8");
  } catch (err: any) {
    throw new ConfigError([`${path}: ${shown} is neither PEM text nor a readable file (${err.code ?? err.message}); ${fix}`]);
  }
  if (!PEM_RE.test(text)) throw new ConfigError([`${path}: the file ${path.endsWith(".key") ? "" : `${value} `}holds no PEM block (-----BEGIN ...----- ... -----END ...-----); ${fix}`]);
  return text;
}

/** tls.ca, tls.cert and tls.key must each be PEM text or a readable PEM file (checked at load, not at first connect). */
function checkTlsMaterial(e: Endpoint, where: string): string[] {
  const out: string[] = [];
  for (const k of ["ca", "cert", "key"] as const) {
    const v = e.tls?.[k];
    if (v === undefined) continue;
    try {
      readPem(v, `${where}.tls.${k}`);
    } catch (err: any) {
      out.push(...(err instanceof ConfigError ? err.problems : [String(err?.message)]));
    }
  }
  if ((e.tls?.cert === undefined) !== (e.tls?.key === undefined)) {
    out.push(`${where}.tls: ${e.tls?.cert === undefined ? "key" : "cert"} is given without ${e.tls?.cert === undefined ? "cert" : "key"}; a client certificate needs both tls.cert and tls.key`);
  }
  return out;
}

/** The binlog client id: configured, else derived from the group (stable across restarts), offset per replica. */
export function baseServerId(c: Config): number {
  if (c.source.serverId) return c.source.serverId;
  const h = createHash("sha1").update(`datasync:${c.group}`).digest();
  return 100_000 + (h.readUInt32BE(0) % 1_000_000_000);
}

/** A copy safe to print: passwords replaced. */
export function redactConfig(c: Config): unknown {
  const red = (e: any) => ({
    ...e,
    password: e.password === undefined ? undefined : "***",
    tls: e.tls ? { ...e.tls, key: e.tls.key === undefined ? undefined : isPemText(e.tls.key) ? "***" : e.tls.key } : undefined,
  });
  return { ...c, source: red(c.source), replicas: c.replicas.map(red) };
}
