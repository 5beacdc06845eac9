// The agent image without a Docker engine: (1) the Dockerfile's structure (no Dockerfile linter is a project
// dependency; dockerfile-utils and dockerfilelint from npm were run by hand, see the README), and (2) the
// image's exact ENTRYPOINT + CMD run as a process with the image's environment and DATASYNC_CONFIG against
// real servers: /healthz answers 200, the HEALTHCHECK command passes, SIGTERM stops it with exit 0.
import { spawn, spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, startServers, type TestServer } from "../support/servers.js";
import { makeConfig, ROOT, waitFor } from "../support/agent.js";

interface Instr {
  op: string;
  args: string;
  stage: string;
}

/** Dockerfile instructions (continuations joined, comments dropped), each with its stage name. */
function parseDockerfile(text: string): { instrs: Instr[]; stages: string[]; comments: string } {
  const logical: string[] = [];
  let cur = "";
  const comments: string[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line.startsWith("#")) {
      comments.push(line);
      continue;
    }
    if (!line && !cur) continue;
    cur += (cur ? " " : "") + line.replace(/\\$/, "").trim();
    if (!line.endsWith("\\")) {
      if (cur.trim()) logical.push(cur.trim());
      cur = "";
    }
  }
  const stages: string[] = [];
  const instrs = logical.map((l) => {
    const m = /^(\S+)\s*(.*)$/.exec(l)!;
    const op = m[1].toUpperCase();
    if (op === "FROM") stages.push(/\bAS\s+(\S+)/i.exec(m[2])?.[1] ?? String(stages.length));
    return { op, args: m[2], stage: stages[stages.length - 1] ?? "" };
  });
  return { instrs, stages, comments: comments.join("\n") };
}

const dockerfile = readFileSync(join(ROOT, "agent", "Dockerfile"), "utf8");
const { instrs, stages, comments } = parseDockerfile(dockerfile);
const final = stages[stages.length - 1];
const inFinal = (op: string) => instrs.filter((i) => i.stage === final && i.op === op);
const jsonArgs = (i: Instr | undefined): string[] => JSON.parse(i?.args.replace(/^--\S+\s+/g, "") ?? "null");
const entrypoint = jsonArgs(inFinal("ENTRYPOINT").at(-1));
const cmd = jsonArgs(inFinal("CMD").at(-1));
// ENV key=value pairs; a value may be double-quoted (spaces inside), as Docker reads it
const imageEnv: Record<string, string> = Object.fromEntries(
  inFinal("ENV").flatMap((i) => [...i.args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|\S+)/g)].map((m) => [m[1], m[2].startsWith('"') ? m[2].slice(1, -1).replace(/\\(.)/g, "$1") : m[2]] as [string, string])),
);
const healthcheck = inFinal("HEALTHCHECK").at(-1);
const healthCmd: string[] = JSON.parse(/\bCMD\s+(\[.*\])\s*$/.exec(healthcheck?.args ?? "")?.[1] ?? "null");

describe("agent/Dockerfile (structure)", () => {
  it("is multi-stage with pinned base images, a small runtime and no Pulumi", () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    for (const f of instrs.filter((i) => i.op === "FROM")) expect(f.args).toMatch(/^\S+:(?!latest\b)[\w.-]+(\s+AS\s+\S+)?$/i);
    // every COPY --from names an earlier stage
    for (const c of instrs.filter((i) => i.op === "COPY" && /--from=/.test(i.args))) {
      const from = /--from=(\S+)/.exec(c.args)![1];
      expect(stages.indexOf(from)).toBeGreaterThanOrEqual(0);
      expect(stages.indexOf(from)).toBeLessThan(stages.indexOf(c.stage));
    }
    const runtime = instrs.filter((i) => i.stage === final).map((i) => `${i.op} ${i.args}`).join("\n");
    expect(runtime).not.toMatch(/provider|typescript|npm ci/);
    expect(dockerfile).toMatch(/npm pkg delete[^\n]*"dependencies\.@pulumi\/pulumi"/);
    expect(instrs.some((i) => i.op === "ADD")).toBe(false);
    // package-manager hygiene: apk without a cache, npm cache cleaned
    for (const r of instrs.filter((i) => i.op === "RUN" && /apk add/.test(i.args))) expect(r.args).toContain("--no-cache");
  });

  it("runs as a non-root user under tini, with a HEALTHCHECK on /healthz and DATASYNC_CONFIG documented", () => {
    const user = inFinal("USER").at(-1)?.args;
    expect(user).toBeTruthy();
    expect(user).not.toMatch(/^(root|0)(:|$)/);
    expect(entrypoint[0]).toMatch(/\/tini$/);
    expect(entrypoint).toContain("--");
    expect(cmd).toEqual(["node", "/app/bin/datasync.js", "agent"]);
    expect(healthcheck?.args).toMatch(/--interval=\d+s/);
    expect(healthCmd[0]).toBe("node");
    expect(healthCmd.join(" ")).toContain("DATASYNC_HEALTH_URL");
    expect(imageEnv.DATASYNC_HEALTH_URL).toBe("http://127.0.0.1:9464/healthz");
    // node's flags, one quoted value: the heap cap and the young generation (the benchmark runs the agent with them)
    expect(imageEnv.NODE_OPTIONS.split(" ")).toEqual(expect.arrayContaining([expect.stringMatching(/^--max-old-space-size=\d+$/), expect.stringMatching(/^--max-semi-space-size=\d+$/)]));
    expect(inFinal("EXPOSE").map((e) => e.args)).toContain("9464");
    expect(comments).toMatch(/DATASYNC_CONFIG\s+required/);
    expect(comments).toMatch(/docker build -f agent\/Dockerfile/);
  });

  it("ships no dev/ tooling: no COPY of dev/, and its CLI without dev/ says the sandbox is a development tool", () => {
    const copies = instrs.filter((i) => i.op === "COPY").map((i) => i.args).join("\n");
    expect(copies).toMatch(/\bagent\//);
    expect(copies).not.toMatch(/(^|[\s/])dev\//m);
    // the runtime stage's layout (package.json, dist/agent, bin/datasync.js, node_modules) without dist/dev
    const app = mkdtempSync(join(tmpdir(), "datasync-image-"));
    try {
      cpSync(join(ROOT, "package.json"), join(app, "package.json"));
      cpSync(join(ROOT, "dist", "agent"), join(app, "dist", "agent"), { recursive: true });
      cpSync(join(ROOT, "bin", "datasync.js"), join(app, "bin", "datasync.js"));
      symlinkSync(join(ROOT, "node_modules"), join(app, "node_modules"));
      const r = spawnSync(process.execPath, [join(app, "bin", "datasync.js"), "sandbox", "--duration", "1"], { cwd: app, encoding: "utf8", timeout: 30_000 });
      expect(r.status, r.stderr).toBe(1);
      expect(r.stderr).toContain("the sandbox is a development tool; run it from a checkout of the repository: npm start");
      expect(r.stderr).not.toMatch(/\n\s+at /); // a message, not a stack trace
    } finally {
      rmSync(app, { recursive: true, force: true });
    }
  });

  it("has a build context (.dockerignore) that admits exactly what the COPY lines need", () => {
    const ignore = readFileSync(join(ROOT, ".dockerignore"), "utf8");
    const admitted = ignore.split("\n").filter((l) => l.startsWith("!")).map((l) => l.slice(1).replace(/\/$/, ""));
    expect(ignore.split("\n").find((l) => l && !l.startsWith("#"))).toBe("*"); // deny by default
    const sources = instrs
      .filter((i) => i.op === "COPY" && !/--from=/.test(i.args))
      .flatMap((i) => i.args.split(/\s+/).filter((a) => !a.startsWith("--")).slice(0, -1))
      .map((s) => s.replace(/\/$/, ""));
    expect(sources.length).toBeGreaterThan(0);
    for (const s of sources) expect(admitted, `${s} is excluded from the build context`).toContain(s);
  });
});

describe("the image's entrypoint as a process", () => {
  let src: TestServer;
  let rep: TestServer;
  const tini = spawnSync("sh", ["-c", "command -v tini"], { encoding: "utf8" }).stdout.trim();

  beforeAll(async () => {
    [src, rep] = await startServers([{ name: "dock-src" }, { name: "dock-r1", noBinlog: true }]);
    await src.query("CREATE DATABASE shop; CREATE TABLE shop.t (id INT PRIMARY KEY, v VARCHAR(20)); INSERT INTO shop.t VALUES (1, 'a')");
  });
  afterAll(async () => {
    await Promise.all([src, rep].map((s) => s?.destroy()));
  });

  /** ENTRYPOINT + CMD with /app mapped to the repository (tini from the machine when it has one) */
  function command(): string[] {
    const argv = [...entrypoint, ...cmd].map((a) => a.replace(/^\/app\//, `${ROOT}/`));
    if (/\/tini$/.test(argv[0])) {
      if (tini) argv[0] = tini;
      else argv.splice(0, argv.indexOf("--") + 1); // no tini here: node alone still gets the signal
    }
    return argv;
  }

  function start(config: string, extraEnv: Record<string, string> = {}) {
    const [bin, ...args] = command();
    const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: "/tmp", ...imageEnv, DATASYNC_CONFIG: config, ...extraEnv };
    const p = spawn(bin, args, { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
    const out = { stdout: "", stderr: "" };
    p.stdout.on("data", (d) => (out.stdout += d));
    p.stderr.on("data", (d) => (out.stderr += d));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => p.on("exit", (code, signal) => r({ code, signal })));
    return { p, out, exited };
  }

  it("serves /healthz, passes the HEALTHCHECK command, syncs, and exits 0 on SIGTERM", { timeout: 90_000 }, async () => {
    const port = await freePort();
    // in a container the agent listens on all interfaces (DESIGN: 0.0.0.0:9464)
    const cfg = JSON.stringify(makeConfig(src, [rep], { http: { listen: `0.0.0.0:${port}` } }));
    const run = start(cfg);
    try {
      const health = await waitFor(
        async () => {
          const r = await fetch(`http://127.0.0.1:${port}/healthz`);
          return r.status === 200 ? r : null;
        },
        30_000,
        `/healthz on ${port}; stderr: ${run.out.stderr}`,
      );
      expect(health.status).toBe(200);
      // the image's HEALTHCHECK, with the URL pointed at this port
      const hc = spawnSync(healthCmd[0], healthCmd.slice(1), { env: { ...process.env, ...imageEnv, DATASYNC_HEALTH_URL: `http://127.0.0.1:${port}/healthz` }, timeout: 10_000 });
      expect(hc.status).toBe(0);
      const dead = await freePort();
      const bad = spawnSync(healthCmd[0], healthCmd.slice(1), { env: { ...process.env, ...imageEnv, DATASYNC_HEALTH_URL: `http://127.0.0.1:${dead}/healthz` }, timeout: 10_000 });
      expect(bad.status).toBe(1);
      // it really syncs: the snapshot row and a streamed one arrive
      await src.query("INSERT INTO shop.t VALUES (2, 'b')");
      await waitFor(async () => (await rep.query<any[]>("SELECT COUNT(*) AS n FROM shop.t").catch(() => [{ n: 0 }]))[0].n == 2, 30_000, "rows on the replica");
    } finally {
      run.p.kill("SIGTERM");
    }
    const { code, signal } = await run.exited;
    expect({ code, signal }, `stderr: ${run.out.stderr}`).toEqual({ code: 0, signal: null });
    expect(run.out.stdout).toContain("stopped; checkpoints saved");
  });

  it("exits non-zero naming the key when DATASYNC_CONFIG is invalid", { timeout: 30_000 }, async () => {
    const cfg = JSON.stringify({ ...makeConfig(src, [rep]), replicaz: [] });
    const run = start(cfg);
    const { code } = await run.exited;
    expect(code).not.toBe(0);
    expect(run.out.stderr).toContain('unknown key "replicaz"');
  });
});
