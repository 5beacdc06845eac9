// Runs the real `datasync` CLI (compiled dist/) as a child process, the way users and the container do.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { TestServer } from "./servers.js";

export const ROOT = resolve(import.meta.dirname, "../..");
export const BIN = join(ROOT, "bin", "datasync.js");

/** one directory per test process for the configs it writes (under the run's DATASYNC_TEST_TMP in vitest, removed when the run ends; elsewhere removed when the process exits) */
let configRoot: string | null = null;
function configDir(): string {
  if (!configRoot) {
    const root = mkdtempSync(join(process.env.DATASYNC_TEST_TMP ?? tmpdir(), "datasync-cfg-"));
    configRoot = root;
    process.once("exit", () => rmSync(root, { recursive: true, force: true }));
  }
  return mkdtempSync(join(configRoot, "c-"));
}

export function writeConfig(cfg: unknown, name = "config.json"): string {
  const dir = configDir();
  const f = join(dir, name);
  writeFileSync(f, typeof cfg === "string" ? cfg : JSON.stringify(cfg, null, 2));
  return f;
}

export function endpoint(s: TestServer, extra: Record<string, unknown> = {}) {
  return { host: "127.0.0.1", port: s.port, user: "root", password: "", ...extra };
}

/**
 * DATASYNC_TEST_READER_THREAD=1 runs every agent the tests start with apply.readerThread on (the shared stream read on
 * a thread of its own), except those that turn the shared stream off: the suites that compare replicas with their
 * source byte for byte then check the reader thread's hand-over as well
 */
function readerThreadOverride(extra: Record<string, unknown>): Record<string, unknown> {
  if (process.env.DATASYNC_TEST_READER_THREAD !== "1") return extra;
  const apply = (extra.apply ?? {}) as Record<string, unknown>;
  if (apply.sharedStream === false || "readerThread" in apply) return extra;
  return { ...extra, apply: { ...apply, readerThread: true } };
}

export function makeConfig(source: TestServer, replicas: TestServer[], extra: Record<string, unknown> = {}) {
  extra = readerThreadOverride(extra);
  return {
    group: "test",
    source: endpoint(source),
    replicas: replicas.map((r, i) => ({ name: `r${i + 1}`, ...endpoint(r) })),
    databases: ["shop"],
    http: { listen: "127.0.0.1:0" },
    heartbeatSeconds: 0.2,
    ...extra,
  };
}

/** `datasync <args>` to completion. */
export function runCli(args: string[], opts: { env?: NodeJS.ProcessEnv; timeout?: number } = {}) {
  const t0 = Date.now();
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: ROOT, encoding: "utf8", timeout: opts.timeout ?? 60_000, env: { ...process.env, ...opts.env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, ms: Date.now() - t0 };
}

export class AgentProcess {
  readonly proc: ChildProcess;
  readonly logs: any[] = [];
  stderr = "";
  #exit: Promise<number | null>;
  #listeners: (() => void)[] = [];

  constructor(configFile: string, env: NodeJS.ProcessEnv = {}) {
    this.proc = spawn(process.execPath, [BIN, "agent", "--config", configFile], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
    let buf = "";
    this.proc.stdout!.on("data", (d: Buffer) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        try {
          this.logs.push(JSON.parse(line));
        } catch {
          this.logs.push({ raw: line });
        }
        this.#listeners.forEach((l) => l());
      }
    });
    this.proc.stderr!.on("data", (d: Buffer) => (this.stderr += d.toString()));
    this.#exit = new Promise((r) => this.proc.on("exit", (code, sig) => r(code ?? (sig ? -1 : null))));
  }

  get exited(): Promise<number | null> {
    return this.#exit;
  }

  get stdoutText(): string {
    return this.logs.map((l) => JSON.stringify(l)).join("\n");
  }

  async waitForLog(pred: (l: any) => boolean, timeout = 20_000): Promise<any> {
    const found = this.logs.find(pred);
    if (found) return found;
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`timed out waiting for a log line; stderr: ${this.stderr}\nlogs:\n${this.stdoutText.slice(-3000)}`)), timeout);
      const l = () => {
        const f = this.logs.find(pred);
        if (f) {
          clearTimeout(t);
          this.#listeners = this.#listeners.filter((x) => x !== l);
          resolve(f);
        }
      };
      this.#listeners.push(l);
      this.#exit.then((code) => {
        l();
        setTimeout(() => {
          if (!this.logs.find(pred)) {
            clearTimeout(t);
            reject(new Error(`the agent exited (${code}) before the awaited log line; stderr: ${this.stderr}\nlogs:\n${this.stdoutText.slice(-3000)}`));
          }
        }, 50);
      });
    });
  }

  async httpAddress(): Promise<string> {
    const l = await this.waitForLog((x) => x.listen && /http listening/.test(x.msg));
    return l.listen;
  }

  async http(path: string): Promise<{ status: number; body: any; text: string }> {
    const addr = await this.httpAddress();
    const res = await fetch(`http://${addr}${path}`);
    const text = await res.text();
    let body: any = null;
    try {
      body = JSON.parse(text);
    } catch {
      /* metrics are text */
    }
    return { status: res.status, body, text };
  }

  /** streaming started for every named replica */
  async waitStreaming(names: string[], timeout = 30_000): Promise<void> {
    for (const n of names) await this.waitForLog((l) => l.replica === n && l.msg === "streaming", timeout);
  }

  kill(signal: NodeJS.Signals = "SIGKILL"): Promise<number | null> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill(signal);
    return this.#exit;
  }
}

export async function waitFor<T>(fn: () => Promise<T | false | null | undefined>, timeout = 30_000, what = "condition"): Promise<T> {
  const deadline = Date.now() + timeout;
  let last: unknown;
  // polls soon at first (most conditions hold within a few tens of ms: an applied row, a checkpoint), then
  // every 150 ms: a fixed 150 ms from the start cost most waits a whole interval, hundreds of times per suite run
  let pause = 20;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, pause));
    pause = Math.min(150, Math.round(pause * 1.5));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ""}`);
}

/** The source's binlog status row (File, Position; Executed_Gtid_Set on MySQL): MySQL 8.4 renamed the statement. */
export async function binlogStatus(source: TestServer): Promise<{ File: string; Position: number | string; Executed_Gtid_Set?: string }> {
  const [st] = await source.query<any[]>(source.flavor === "mysql" ? "SHOW BINARY LOG STATUS" : "SHOW MASTER STATUS");
  return st;
}

/**
 * Wait until the replica's checkpoint for the group has reached the source's current binlog end with its
 * snapshot complete (state streaming): during a snapshot the stream can be at the end while a table still
 * waits for its copy (after a restart, a table still pending is empty until its copy starts).
 */
export async function waitCaughtUp(source: TestServer, replica: TestServer, group = "test", timeout = 60_000): Promise<void> {
  const st = await binlogStatus(source);
  const file = st.File as string;
  const pos = Number(st.Position);
  const num = (f: string) => Number(/(\d+)$/.exec(f)?.[1] ?? 0);
  await waitFor(
    async () => {
      const rows = await replica.query<any[]>("SELECT binlog_file, binlog_pos, state FROM _datasync.checkpoints WHERE group_name = ?", [group]);
      if (!rows.length) return false;
      const r = rows[0];
      if (r.state !== "streaming") return false;
      return num(r.binlog_file) > num(file) || (num(r.binlog_file) === num(file) && Number(r.binlog_pos) >= pos);
    },
    timeout,
    `replica ${replica.name} to reach ${file}:${pos} with its snapshot complete`,
  );
}

export async function checksums(s: TestServer, tables: string[]): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const t of tables) {
    const rows = await s.query<any[]>(`CHECKSUM TABLE ${t} EXTENDED`);
    out[t] = String(rows[0].Checksum);
  }
  return out;
}

export async function tableList(s: TestServer, db: string): Promise<string[]> {
  const rows = await s.query<any[]>("SELECT TABLE_NAME AS t FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE' ORDER BY 1", [db]);
  return rows.map((r) => `\`${db}\`.\`${String(r.t).replace(/`/g, "``")}\``);
}
