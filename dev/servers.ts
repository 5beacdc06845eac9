// Servers owns private MariaDB/MySQL server processes for tests, the benchmark and the sandbox:
// own datadir, own port on 127.0.0.1, binlog configured as the agent needs (DESIGN.md facts).
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { cpSync, existsSync, mkdirSync, rmSync, openSync, closeSync, writeFileSync, readFileSync, readdirSync, realpathSync, renameSync, statSync } from "node:fs";
import { createHash } from "node:crypto";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import mysql from "mysql2/promise";

export class ServerBinaryMissing extends Error {
  constructor() {
    super(
      "No MariaDB/MySQL server binary (mariadbd or mysqld) was found on PATH or in /usr/sbin. " +
        "Install one: on Debian/Ubuntu `sudo apt-get install -y mariadb-server` (or run `npm run setup`, which does it).",
    );
    this.name = "ServerBinaryMissing";
  }
}

function which(names: string[]): string | null {
  const dirs = (process.env.PATH ?? "").split(":").concat(["/usr/sbin", "/usr/local/sbin", "/usr/local/mysql/bin"]);
  for (const n of names) for (const d of dirs) if (d && existsSync(join(d, n))) return join(d, n);
  return null;
}

export type Flavor = "mariadb" | "mysql";

/** The flavor tests run on: `DATASYNC_TEST_FLAVOR` (set per vitest project), else MariaDB. */
export function defaultFlavor(): Flavor {
  const f = process.env.DATASYNC_TEST_FLAVOR;
  if (f === "mysql" || f === "mariadb") return f;
  if (f) throw new Error(`DATASYNC_TEST_FLAVOR=${f}: use mariadb or mysql`);
  return "mariadb";
}

/** the project root (where package.json is), from source (agent/) or compiled (dist/agent/) */
function projectRoot(): string {
  let d = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    const pj = join(d, "package.json");
    if (existsSync(pj) && /"name":\s*"datasync"/.test(readFileSync(pj, "utf8"))) return d;
    d = dirname(d);
  }
  return process.cwd();
}

export class MysqlBinaryMissing extends Error {
  constructor(path: string) {
    super(`No MySQL server binary at ${path}. Run \`npm run setup -- mysql\` (fetches Debian's mysql-server-core into .mysql/), or set DATASYNC_MYSQLD to a mysqld 8.0+ binary.`);
    this.name = "MysqlBinaryMissing";
  }
}

/** the folder of MySQL's wrappers (mysqld, mysql, mysqldump, mysqlbinlog) made by the setup step */
export function mysqlBinDir(): string {
  if (process.env.DATASYNC_MYSQLD) return dirname(process.env.DATASYNC_MYSQLD);
  return join(projectRoot(), ".mysql", "bin");
}

export function serverBinary(flavor: Flavor = "mariadb"): string {
  if (flavor === "mysql") {
    const b = process.env.DATASYNC_MYSQLD ?? join(mysqlBinDir(), "mysqld");
    if (!existsSync(b)) throw new MysqlBinaryMissing(b);
    return b;
  }
  const b = which(["mariadbd", "mysqld"]);
  if (!b) throw new ServerBinaryMissing();
  return b;
}

/** a client tool of the flavor: "client" (mysql/mariadb), "dump", "binlog" */
export function clientBinary(flavor: Flavor, tool: "client" | "dump" | "binlog"): string {
  if (flavor === "mysql") return join(mysqlBinDir(), { client: "mysql", dump: "mysqldump", binlog: "mysqlbinlog" }[tool]);
  const names = { client: ["mariadb", "mysql"], dump: ["mariadb-dump", "mysqldump"], binlog: ["mariadb-binlog", "mysqlbinlog"] }[tool];
  const b = which(names);
  if (!b) throw new ServerBinaryMissing();
  return b;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.unref();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const addr = s.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export interface ServerOptions {
  /** a label for the datadir and logs */
  name?: string;
  /** parent of the datadir; default $TMPDIR/datasync-servers */
  baseDir?: string;
  port?: number;
  serverId?: number;
  /** extra mariadbd arguments, e.g. ["--binlog-format=STATEMENT"] */
  args?: string[];
  /** no binlog at all (a pure replica) */
  noBinlog?: boolean;
  /** mariadb (Debian's mariadbd) or mysql (the setup step's private MySQL); default defaultFlavor() */
  flavor?: Flavor;
  /**
   * Options fixed when the datadir is initialized, e.g. ["--lower-case-table-names=1"] (MySQL 8+ refuses to
   * start with another value than the one it was initialized with): given to the initialize step and to
   * every start. Servers with the same options share one initialized template.
   */
  initArgs?: string[];
}

const templateDirs = new Map<string, string>();

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e: any) {
    return e?.code === "EPERM";
  }
}

/** the command lines of running processes (a left-over server still using a datadir keeps it) */
function runningCommandLines(): string {
  let all = "";
  for (const p of readdirSync("/proc")) {
    if (!/^\d+$/.test(p)) continue;
    try {
      all += readFileSync(`/proc/${p}/cmdline`, "utf8") + "\n";
    } catch {
      /* gone meanwhile */
    }
  }
  return all;
}

const swept = new Set<string>();
/**
 * Removes what processes that have ended left under `base`: their templates (one per process and option
 * set: a test process killed before its exit handler ran leaves it behind, and a day of runs filled the
 * disk) and the datadirs of servers no running process uses. Once per process and folder.
 */
export function sweepLeftovers(base: string): void {
  if (swept.has(base) || !existsSync(base)) return;
  swept.add(base);
  let inUse: string | null = null;
  for (const name of readdirSync(base)) {
    const t = /^template-(?:mysql-)?(\d+)/.exec(name);
    const d = t ? null : /^(.+-(\d+)-[0-9a-z]+-[0-9a-z]+)(?:\.sock|\.sock\.lock|\.err|\.tmp|\.pid)?$/.exec(name);
    const pid = Number(t?.[1] ?? d?.[2] ?? 0);
    if (!pid || pid === process.pid || alive(pid)) continue;
    if (d) {
      inUse ??= runningCommandLines();
      if (inUse.includes(join(base, d[1]))) continue;
    }
    rmSync(join(base, name), { recursive: true, force: true });
  }
}

// this process's templates go with it
process.once("exit", () => {
  for (const dir of ownTemplates) {
    rmSync(dir, { recursive: true, force: true });
    rmSync(`${dir}.tmp`, { recursive: true, force: true });
  }
});

/** the template folder's suffix for initialize-time options ("" without any): a short stable hash */
function initTag(initArgs: string[]): string {
  if (initArgs.length === 0) return "";
  let h = 0;
  for (const ch of initArgs.join("\0")) h = (Math.imul(h, 31) + ch.charCodeAt(0)) >>> 0;
  return `-i${h.toString(36)}`;
}

/**
 * One initialized datadir per flavor and set of initialize-time options, copied for every server
 * (initializing costs seconds; a copy does not). With `DATASYNC_SERVER_TEMPLATES` set (the test suite sets it),
 * templates live in that folder and are shared by every process: one vitest file per process would otherwise
 * initialize its own (MySQL 5-8 s, MariaDB 3-5 s on this machine, for each of ~60 files per suite run).
 */
function template(base: string, flavor: Flavor = defaultFlavor(), initArgs: string[] = []): string {
  const key = `${flavor}:${base}:${initArgs.join(" ")}`;
  sweepLeftovers(base);
  const known = templateDirs.get(key);
  if (known && existsSync(join(known, "mysql"))) return known;
  const shared = process.env.DATASYNC_SERVER_TEMPLATES;
  if (shared) {
    const dir = sharedTemplate(shared, flavor, initArgs);
    templateDirs.set(key, dir);
    return dir;
  }
  const dir = join(base, `template-${flavor === "mysql" ? "mysql-" : ""}${process.pid}${initTag(initArgs)}`);
  if (!existsSync(join(dir, "mysql"))) initialize(dir, flavor, initArgs);
  templateDirs.set(key, dir);
  ownTemplates.add(dir);
  return dir;
}

/** templates this process made in a base folder (removed at exit; shared ones stay for the next process) */
const ownTemplates = new Set<string>();

/** how templates are made: change it when initialize() changes, so shared templates made before are not reused */
const TEMPLATE_RECIPE = "1";

/**
 * A template in the shared folder, named after what makes it: flavor, the server binary (path, size, mtime),
 * the initialize-time options and the recipe. Built under a private name and renamed into place, so a process
 * never copies a half-made one; two processes building the same one at once both succeed (the second's is dropped).
 * A template is never started, only copied, so it never changes once in place.
 */
function sharedTemplate(folder: string, flavor: Flavor, initArgs: string[]): string {
  mkdirSync(folder, { recursive: true });
  sweepBuilds(folder);
  const bin = realpathSync(serverBinary(flavor));
  const st = statSync(bin);
  const id = createHash("sha256").update([TEMPLATE_RECIPE, flavor, bin, st.size, st.mtimeMs, ...initArgs].join("\0")).digest("hex").slice(0, 16);
  const dir = join(folder, `${flavor}.${id}`);
  if (existsSync(join(dir, "mysql"))) return dir;
  const build = `${dir}.build-${process.pid}`;
  try {
    initialize(build, flavor, initArgs);
    try {
      renameSync(build, dir);
    } catch (e) {
      // another process put the same template in place first
      if (!existsSync(join(dir, "mysql"))) throw e;
    }
  } finally {
    rmSync(build, { recursive: true, force: true });
    rmSync(`${build}.tmp`, { recursive: true, force: true });
  }
  return dir;
}

/** what builds of processes that have ended left in the shared folder (once per process) */
function sweepBuilds(folder: string): void {
  if (swept.has(folder)) return;
  swept.add(folder);
  for (const name of readdirSync(folder)) {
    const pid = Number(/\.build-(\d+)(?:\.tmp|\.init\.sql)?$/.exec(name)?.[1] ?? 0);
    if (pid && pid !== process.pid && !alive(pid)) rmSync(join(folder, name), { recursive: true, force: true });
  }
}

/** an initialized datadir at `dir` (replaced if there) */
function initialize(dir: string, flavor: Flavor, initArgs: string[]): void {
  if (flavor === "mysql") return mysqlInitialize(dir, initArgs);
  const installer = which(["mariadb-install-db", "mysql_install_db"]);
  if (!installer) throw new ServerBinaryMissing();
  // A private tmpdir: concurrent bootstraps sharing /tmp can collide on temporary table names.
  const tmp = `${dir}.tmp`;
  let r: ReturnType<typeof spawnSync> | null = null;
  for (let attempt = 0; attempt < 3; attempt++) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    mkdirSync(tmp, { recursive: true });
    r = spawnSync(
      installer,
      // mariadb-install-db passes the options it does not know to the bootstrapping server
      ["--no-defaults", "--user=root", `--datadir=${dir}`, `--tmpdir=${tmp}`, "--auth-root-authentication-method=normal", "--skip-test-db", ...initArgs],
      { encoding: "utf8" },
    );
    if (r.status === 0) break;
  }
  rmSync(tmp, { recursive: true, force: true });
  if (!r || r.status !== 0) throw new Error(`mariadb-install-db failed (exit ${r?.status}): ${String(r?.stderr || r?.stdout)}`);
}

/** `mysqld --initialize-insecure`; root also over TCP from 127.0.0.1 (skip-name-resolve). */
function mysqlInitialize(dir: string, initArgs: string[]): void {
  const bin = serverBinary("mysql");
  mkdirSync(dirname(dir), { recursive: true });
  const init = `${dir}.init.sql`;
  writeFileSync(init, "CREATE USER 'root'@'127.0.0.1' IDENTIFIED BY '';\nGRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;\n");
  let r: ReturnType<typeof spawnSync> | null = null;
  for (let attempt = 0; attempt < 3; attempt++) {
    rmSync(dir, { recursive: true, force: true });
    r = spawnSync(bin, ["--no-defaults", "--initialize-insecure", "--user=root", `--datadir=${dir}`, `--init-file=${init}`, "--innodb-redo-log-capacity=64M", ...initArgs], { encoding: "utf8" });
    if (r.status === 0) break;
  }
  rmSync(init, { force: true });
  if (!r || r.status !== 0) throw new Error(`mysqld --initialize-insecure failed (exit ${r?.status}): ${String(r?.stderr || r?.stdout).slice(-3000)}`);
  // every copy must get its own server_uuid (written at first start when auto.cnf is absent)
  rmSync(join(dir, "auto.cnf"), { force: true });
}

export class TestServer {
  readonly name: string;
  readonly datadir: string;
  readonly socket: string;
  port = 0;
  readonly serverId: number;
  readonly flavor: Flavor;
  #proc: ChildProcess | null = null;
  #opts: ServerOptions;
  #base: string;

  constructor(opts: ServerOptions = {}) {
    this.#opts = opts;
    this.#base = opts.baseDir ?? join(tmpdir(), "datasync-servers");
    this.name = opts.name ?? "db";
    this.flavor = opts.flavor ?? defaultFlavor();
    this.serverId = opts.serverId ?? 1 + Math.floor(Math.random() * 1_000_000);
    const unique = `${this.name}-${process.pid}-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e6).toString(36)}`;
    this.datadir = join(this.#base, unique);
    this.socket = join(this.#base, `${unique}.sock`);
  }

  get host(): string {
    return "127.0.0.1";
  }

  /** connection options for mysql2 as root */
  get rootOptions(): mysql.ConnectionOptions {
    return { host: "127.0.0.1", port: this.port, user: "root", password: "", multipleStatements: true, supportBigNumbers: true, bigNumberStrings: true, dateStrings: true };
  }

  get running(): boolean {
    return this.#proc !== null && this.#proc.exitCode === null && this.#proc.signalCode === null;
  }

  async start(extraArgs: string[] = []): Promise<this> {
    const bin = serverBinary(this.flavor);
    mkdirSync(this.#base, { recursive: true });
    if (!existsSync(join(this.datadir, "mysql"))) cpSync(template(this.#base, this.flavor, this.#opts.initArgs), this.datadir, { recursive: true });
    if (!this.port) this.port = this.#opts.port ?? (await freePort());
    const mysql8 = this.flavor === "mysql";
    const binlog = this.#opts.noBinlog
      ? mysql8 ? ["--skip-log-bin"] : []
      : ["--log-bin=binlog", "--binlog-format=ROW", "--binlog-row-image=FULL", "--binlog-row-metadata=FULL"];
    const flavorArgs = mysql8
      ? [
          "--gtid-mode=ON",
          "--enforce-gtid-consistency=ON",
          "--mysqlx=OFF",
          `--secure-file-priv=${this.datadir}.tmp`,
          `--pid-file=${this.datadir}.pid`,
          "--innodb-redo-log-capacity=100M",
          "--log-error-verbosity=2",
          // fewer background threads and writes: a test server idles on a shared 2-core machine
          "--innodb-purge-threads=1",
          "--innodb-page-cleaners=1",
          "--innodb-read-io-threads=1",
          "--innodb-write-io-threads=1",
          "--innodb-log-writer-threads=OFF",
          "--innodb-doublewrite=OFF",
          "--innodb-adaptive-hash-index=OFF",
          // many servers at once exhaust the kernel's aio-max-nr (io_setup EAGAIN: "Cannot initialize AIO sub-system")
          "--innodb-use-native-aio=OFF",
        ]
      : ["--innodb-log-file-size=48M"];
    const args = [
      "--no-defaults",
      "--user=root",
      `--datadir=${this.datadir}`,
      `--socket=${this.socket}`,
      `--port=${this.port}`,
      "--bind-address=127.0.0.1",
      `--server-id=${this.serverId}`,
      ...binlog,
      "--character-set-server=utf8mb4",
      "--collation-server=utf8mb4_general_ci",
      "--innodb-buffer-pool-size=64M",
      ...flavorArgs,
      "--innodb-flush-log-at-trx-commit=2",
      "--sync-binlog=0",
      "--skip-name-resolve",
      "--max-connections=300",
      "--performance-schema=OFF",
      `--log-error=${this.datadir}.err`,
      `--tmpdir=${this.datadir}.tmp`,
      ...(this.#opts.initArgs ?? []),
      ...(this.#opts.args ?? []),
      ...extraArgs,
    ];
    mkdirSync(`${this.datadir}.tmp`, { recursive: true });
    const out = openSync(`${this.datadir}.out`, "a");
    this.#proc = spawn(bin, args, { stdio: ["ignore", out, out], detached: false });
    closeSync(out);
    const proc = this.#proc;
    // MySQL starts in ≈5 s idle, many times that while other servers start on the same two cores
    const deadline = Date.now() + (this.flavor === "mysql" ? 150_000 : 60_000);
    let lastErr: unknown = null;
    while (Date.now() < deadline) {
      if (proc.exitCode !== null || proc.signalCode !== null) {
        throw new Error(`${this.flavor} server ${this.name} exited at start (code ${proc.exitCode}); see ${this.datadir}.err`);
      }
      try {
        const c = await mysql.createConnection({ ...this.rootOptions, connectTimeout: 1000 });
        await c.end();
        return this;
      } catch (e) {
        lastErr = e;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    throw new Error(`${this.flavor} server ${this.name} did not accept connections within ${this.flavor === "mysql" ? 150 : 60} s: ${String(lastErr)}`);
  }

  async connect(extra: mysql.ConnectionOptions = {}): Promise<mysql.Connection> {
    return mysql.createConnection({ ...this.rootOptions, ...extra });
  }

  /** run statements as root and return the rows of the last one */
  async query<T = any>(sql: string, params: unknown[] = []): Promise<T> {
    const c = await this.connect();
    try {
      const [rows] = await c.query(sql, params);
      return rows as T;
    } finally {
      await c.end();
    }
  }

  /** SIGKILL: a crash */
  async kill(): Promise<void> {
    const p = this.#proc;
    if (!p || !this.running) return;
    const exited = new Promise((r) => p.once("exit", r));
    p.kill("SIGKILL");
    await exited;
  }

  /** clean shutdown */
  async stop(): Promise<void> {
    const p = this.#proc;
    if (!p || !this.running) return;
    const exited = new Promise((r) => p.once("exit", r));
    p.kill("SIGTERM");
    const t = setTimeout(() => p.kill("SIGKILL"), 20_000);
    await exited;
    clearTimeout(t);
  }

  async restart(extraArgs: string[] = []): Promise<this> {
    await this.stop();
    return this.start(extraArgs);
  }

  /** stop and delete the datadir */
  async destroy(): Promise<void> {
    await this.kill();
    rmSync(this.datadir, { recursive: true, force: true });
    rmSync(`${this.datadir}.err`, { force: true });
    rmSync(`${this.datadir}.out`, { force: true });
    rmSync(`${this.datadir}.tmp`, { recursive: true, force: true });
    rmSync(`${this.datadir}.pid`, { force: true });
  }
}

/** Start several servers at once. */
export async function startServers(specs: ServerOptions[]): Promise<TestServer[]> {
  // the template must exist before parallel starts copy it
  const kinds = new Map(specs.map((s) => [`${s.flavor ?? defaultFlavor()} ${(s.initArgs ?? []).join(" ")}`, s]));
  for (const s of kinds.values()) template(s.baseDir ?? join(tmpdir(), "datasync-servers"), s.flavor ?? defaultFlavor(), s.initArgs);
  return Promise.all(specs.map((s) => new TestServer(s).start()));
}
