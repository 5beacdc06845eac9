// LocalAgent owns the agent as a local background process for dev stacks
// (pulumi-nodejs:dynamic/datasync:LocalAgent): create starts `node <repo>/bin/datasync.js agent` with the config
// in DATASYNC_CONFIG and waits for /healthz; delete stops it with SIGTERM (clean stop, checkpoints saved);
// diff notices a process that died and replaces it.
import * as pulumi from "@pulumi/pulumi";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { canonical, STATE_VERSION, UNKNOWN } from "./spec.js";

/** the CLI next to the compiled provider: <repo>/bin/datasync.js */
const DEFAULT_ENTRY = fileURLToPath(new URL("../../bin/datasync.js", import.meta.url));

interface LocalAgentInputs {
  config: string;
  entry: string;
  args: string[];
  logFile: string;
  startTimeoutSeconds: number;
  stopTimeoutSeconds: number;
}

/** the health URL from the config's http.listen (default 127.0.0.1:9464); a wildcard is reached on loopback */
function healthUrl(config: string): string {
  const listen: string = JSON.parse(config)?.http?.listen ?? "127.0.0.1:9464";
  const i = listen.lastIndexOf(":");
  let host = listen.slice(0, i);
  if (host === "0.0.0.0" || host === "" || host === "*") host = "127.0.0.1";
  if (host === "[::]") host = "[::1]";
  return `http://${host}:${listen.slice(i + 1)}/healthz`;
}

/** field 22 of /proc/<pid>/stat: start time since boot; tells a reused pid from ours. null when gone or a zombie. */
async function startTimeOf(pid: number): Promise<string | null> {
  const { readFile } = await import("node:fs/promises");
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (fields[0] === "Z" || fields[0] === "X") return null;
    return fields[19];
  } catch {
    return null;
  }
}

async function alive(pid: unknown, startTime: unknown): Promise<boolean> {
  if (typeof pid !== "number" || pid <= 0) return false;
  const st = await startTimeOf(pid);
  return st !== null && (startTime === undefined || st === startTime);
}

async function tail(file: string, lines = 15): Promise<string> {
  const { readFile } = await import("node:fs/promises");
  try {
    return (await readFile(file, "utf8")).split("\n").slice(-lines - 1).join("\n").trim();
  } catch {
    return "(no log)";
  }
}

async function start(n: LocalAgentInputs): Promise<Record<string, unknown>> {
  const { spawn } = await import("node:child_process");
  const { mkdirSync, openSync, closeSync, existsSync } = await import("node:fs");
  const { dirname } = await import("node:path");
  if (!existsSync(n.entry)) throw new Error(`entry: ${n.entry} does not exist; build the repository (npm run build) or point entry at bin/datasync.js.`);
  const url = healthUrl(n.config);
  mkdirSync(dirname(n.logFile), { recursive: true });
  const fd = openSync(n.logFile, "a");
  const child = spawn(process.execPath, [n.entry, ...n.args], {
    detached: true, // its own process group: it outlives the provider host, and Ctrl-C of `pulumi up` does not reach it
    stdio: ["ignore", fd, fd],
    env: { ...process.env, DATASYNC_CONFIG: n.config },
  });
  closeSync(fd);
  child.unref();
  const pid = child.pid!;
  let exit: string | null = null;
  child.once("exit", (code, signal) => (exit = signal ? `signal ${signal}` : `code ${code}`));
  const deadline = Date.now() + n.startTimeoutSeconds * 1000;
  let last = "";
  while (Date.now() < deadline) {
    if (exit !== null) throw new Error(`the agent exited at start (${exit}); log ${n.logFile}:\n${await tail(n.logFile)}`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      if (res.status === 200) {
        return { pid, startTime: await startTimeOf(pid), healthUrl: url, ...n, stateVersion: STATE_VERSION };
      }
      last = `HTTP ${res.status}`;
    } catch (err: any) {
      last = err?.cause?.code ?? err?.message;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  await stop(pid, await startTimeOf(pid), 5);
  throw new Error(`the agent did not answer ${url} within ${n.startTimeoutSeconds} s (last: ${last}); it was stopped. Log ${n.logFile}:\n${await tail(n.logFile)}`);
}

/** SIGTERM, wait for the clean stop, SIGKILL after the timeout. */
async function stop(pid: number, startTime: unknown, timeoutSeconds: number): Promise<void> {
  if (!(await alive(pid, startTime ?? undefined))) return;
  try {
    process.kill(pid, "SIGTERM");
  } catch {
    return;
  }
  const deadline = Date.now() + timeoutSeconds * 1000;
  while (Date.now() < deadline) {
    if (!(await alive(pid, startTime ?? undefined))) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  try {
    process.kill(pid, "SIGKILL");
  } catch {}
}

const REPLACING = ["config", "entry", "args"];

export const localAgentProvider: pulumi.dynamic.ResourceProvider = {
  async check(_olds: any, news: any) {
    const failures: { property: string; reason: string }[] = [];
    if (typeof news.config === "string" && news.config !== UNKNOWN) {
      try {
        healthUrl(news.config);
      } catch {
        failures.push({ property: "config", reason: "config: not JSON; pass the agentConfig output of a SyncGroup." });
      }
    } else if (news.config !== UNKNOWN) {
      failures.push({ property: "config", reason: "config: required; pass the agentConfig output of a SyncGroup." });
    }
    return { inputs: { ...news, stateVersion: STATE_VERSION }, failures };
  },
  async diff(_id: string, olds: any, news: any) {
    const replaces = REPLACING.filter((k) => isChanged(olds[k], news[k]));
    if (!(await alive(olds.pid, olds.startTime))) replaces.push("pid"); // it died: start a new one
    const updates = ["logFile", "startTimeoutSeconds", "stopTimeoutSeconds"].filter((k) => isChanged(olds[k], news[k]));
    // one agent per config at a time (same HTTP port, same checkpoints): stop the old one first
    return { changes: replaces.length + updates.length > 0, replaces, deleteBeforeReplace: true };
  },
  async create(inputs: any) {
    const outs = await start(inputs);
    return { id: `pid-${outs.pid}`, outs };
  },
  async update(_id: string, olds: any, news: any) {
    // only settings that do not touch the process change in place
    return { outs: { ...olds, logFile: news.logFile, startTimeoutSeconds: news.startTimeoutSeconds, stopTimeoutSeconds: news.stopTimeoutSeconds } };
  },
  async delete(_id: string, props: any) {
    await stop(props.pid, props.startTime, props.stopTimeoutSeconds ?? 20);
  },
};

function isChanged(a: unknown, b: unknown): boolean {
  return b === UNKNOWN || canonical(a) !== canonical(b);
}

export interface LocalAgentArgs {
  /** the agent config JSON: a SyncGroup's `agentConfig` */
  config: pulumi.Input<string>;
  /** Defaults to <repo>/bin/datasync.js next to the compiled provider. */
  entry?: pulumi.Input<string>;
  /** Defaults to ["agent"]. */
  args?: pulumi.Input<pulumi.Input<string>[]>;
  /** Defaults to .datasync/<name>.log under the working directory. */
  logFile?: pulumi.Input<string>;
  /** Defaults to 30. */
  startTimeoutSeconds?: pulumi.Input<number>;
  /** Defaults to 20 (then SIGKILL). */
  stopTimeoutSeconds?: pulumi.Input<number>;
}

export class LocalAgent extends pulumi.dynamic.Resource {
  declare readonly pid: pulumi.Output<number>;
  declare readonly healthUrl: pulumi.Output<string>;
  declare readonly logFile: pulumi.Output<string>;

  constructor(name: string, args: LocalAgentArgs, opts: pulumi.CustomResourceOptions = {}) {
    super(
      localAgentProvider,
      name,
      {
        config: pulumi.secret(args.config),
        entry: args.entry ?? DEFAULT_ENTRY,
        args: args.args ?? ["agent"],
        logFile: args.logFile ?? join(process.cwd(), ".datasync", `${name}.log`),
        startTimeoutSeconds: args.startTimeoutSeconds ?? 30,
        stopTimeoutSeconds: args.stopTimeoutSeconds ?? 20,
        pid: undefined,
        startTime: undefined,
        healthUrl: undefined,
        stateVersion: STATE_VERSION,
      },
      { ...opts, additionalSecretOutputs: [...(opts.additionalSecretOutputs ?? []), "config"] },
      "datasync",
      "LocalAgent",
    );
  }
}
