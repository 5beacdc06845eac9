// Servers owns private MariaDB/MySQL server processes for tests, the benchmark and the sandbox:
// own datadir, own port on 127.0.0.1, binlog configured as the agent needs (DESIGN.md facts).
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { cpSync, existsSync, mkdirSync, rmSync, openSync, closeSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
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

export function serverBinary(): string {
  const b = which(["mariadbd", "mysqld"]);
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
}

let templateDir: string | null = null;

/** One initialized datadir, copied for every server (mariadb-install-db costs seconds; a copy does not). */
function template(base: string): string {
  if (templateDir && existsSync(join(templateDir, "mysql"))) return templateDir;
  const dir = join(base, `template-${process.pid}`);
  if (!existsSync(join(dir, "mysql"))) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
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
        ["--no-defaults", "--user=root", `--datadir=${dir}`, `--tmpdir=${tmp}`, "--auth-root-authentication-method=normal", "--skip-test-db"],
        { encoding: "utf8" },
      );
      if (r.status === 0) break;
    }
    if (!r || r.status !== 0) throw new Error(`mariadb-install-db failed (exit ${r?.status}): ${String(r?.stderr || r?.stdout)}`);
  }
  templateDir = dir;
  return dir;
}

export class TestServer {
  readonly name: string;
  readonly datadir: string;
  readonly socket: string;
  port = 0;
  readonly serverId: number;
  #proc: ChildProcess | null = null;
  #opts: ServerOptions;
  #base: string;

  constructor(opts: ServerOptions = {}) {
    this.#opts = opts;
    this.#base = opts.baseDir ?? join(tmpdir(), "datasync-servers");
    this.name = opts.name ?? "db";
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
    const bin = serverBinary();
    mkdirSync(this.#base, { recursive: true });
    if (!existsSync(join(this.datadir, "mysql"))) cpSync(template(this.#base), this.datadir, { recursive: true });
    if (!this.port) this.port = this.#opts.port ?? (await freePort());
    const binlog = this.#opts.noBinlog
      ? []
      : ["--log-bin=binlog", "--binlog-format=ROW", "--binlog-row-image=FULL", "--binlog-row-metadata=FULL"];
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
      "--innodb-log-file-size=48M",
      "--innodb-flush-log-at-trx-commit=2",
      "--sync-binlog=0",
      "--skip-name-resolve",
      "--max-connections=300",
      "--performance-schema=OFF",
      `--log-error=${this.datadir}.err`,
      `--tmpdir=${this.datadir}.tmp`,
      ...(this.#opts.args ?? []),
      ...extraArgs,
    ];
    mkdirSync(`${this.datadir}.tmp`, { recursive: true });
    const out = openSync(`${this.datadir}.out`, "a");
    this.#proc = spawn(bin, args, { stdio: ["ignore", out, out], detached: false });
    closeSync(out);
    const proc = this.#proc;
    const deadline = Date.now() + 30_000;
    let lastErr: unknown = null;
    while (Date.now() < deadline) {
      if (proc.exitCode !== null || proc.signalCode !== null) {
        throw new Error(`mariadbd ${this.name} exited at start (code ${proc.exitCode}); see ${this.datadir}.err`);
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
    throw new Error(`mariadbd ${this.name} did not accept connections within 30 s: ${String(lastErr)}`);
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
  }
}

/** Start several servers at once. */
export async function startServers(specs: ServerOptions[]): Promise<TestServer[]> {
  // the template must exist before parallel starts copy it
  template(specs[0]?.baseDir ?? join(tmpdir(), "datasync-servers"));
  return Promise.all(specs.map((s) => new TestServer(s).start()));
}
