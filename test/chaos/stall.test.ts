// A half-open binlog connection: the proxy stops forwarding on the agent's binlog dump connections without
// closing them, while the source keeps writing. The agent must notice on its own (no restart, no resume of the
// proxy) — the "binlog connection stalled" log line and datasync_errors_total{kind="stall"} — reconnect, and
// end identical. Detection takes max(30 s, 5 × heartbeatSeconds) in the agent (replica.ts #checkStall).
import { afterAll, beforeAll, expect, it } from "vitest";
import { AgentProcess, checksums, tableList, waitCaughtUp, waitFor, writeConfig } from "../support/agent.js";
import { Writer } from "../support/load.js";
import { ChaosEnv } from "./chaos.js";

let env: ChaosEnv;
let agent: AgentProcess | null = null;

beforeAll(async () => {
  env = await ChaosEnv.start({ prefillRows: 100 });
  await env.reset();
});

afterAll(async () => {
  await agent?.kill("SIGKILL");
  await env?.destroy();
});

it("detects a stalled (half-open) binlog connection and recovers without a restart", { timeout: 90_000 }, async () => {
  agent = new AgentProcess(writeConfig(env.agentConfig({ heartbeatSeconds: 0.2, apply: { maxRows: 500, sharedStream: true } })));
  await agent.waitStreaming(["r1", "r2"]);
  for (const n of ["r1", "r2"]) await agent.waitForLog((l) => l.replica === n && /snapshot complete/.test(l.msg ?? ""), 30_000);
  const pid = agent.proc.pid;
  const writer = new Writer(env.src);
  writer.start(1);
  await new Promise((r) => setTimeout(r, 500));

  const proxy = env.proxy("source");
  const stalledAt = Date.now();
  expect(proxy.stall("binlog")).toBe(1); // one binlog connection shared by both replicas (apply.sharedStream on here)
  const mark = agent.logs.length;
  // The source moves on past what the stalled readers have seen, then goes quiet. (While the source writes
  // without a pause of 1 s the agent never fires: #checkStall also requires the polled end to be unchanged
  // for 1 s, `Date.now() - end.at > 1000`, which a steady load never satisfies; see the chaos report.)
  await new Promise((r) => setTimeout(r, 2000));
  const stats = await writer.stop();
  for (const n of ["r1", "r2"]) {
    await agent.waitForLog((l) => agent!.logs.indexOf(l) >= mark && l.replica === n && /the binlog connection stalled/.test(l.msg ?? ""), 60_000);
  }
  const detectedAfter = Date.now() - stalledAt;
  expect(detectedAfter).toBeLessThan(60_000);
  // the same process, still serving; the error is counted by kind
  expect(agent.proc.pid).toBe(pid);
  expect(agent.proc.exitCode).toBeNull();
  const metrics = (await agent.http("/metrics")).text;
  for (const n of ["r1", "r2"]) expect(metrics).toMatch(new RegExp(`datasync_errors_total\\{[^}]*replica="${n}"[^}]*kind="stall"[^}]*\\} [1-9]`));
  // it reconnected by itself: new binlog connections stream while the old ones are still held half-open
  await waitFor(async () => proxy.connections().filter((c) => c.kind === "binlog" && !c.stalled).length >= 1, 20_000, "a fresh binlog connection");
  expect(proxy.connections().filter((c) => c.kind === "binlog" && c.stalled).length).toBeGreaterThan(0);

  expect(stats.committed).toBeGreaterThan(20);
  for (const r of env.reps) await waitCaughtUp(env.src, r, "chaos", 30_000);
  proxy.resume();
  const tables = await tableList(env.src, "shop");
  const want = await checksums(env.src, tables);
  for (const r of env.reps) expect(await checksums(r, tables)).toEqual(want);
  await agent.kill("SIGTERM");
});

it("detects a stalled binlog connection within stallSeconds while the replica works through a backlog", { timeout: 120_000 }, async () => {
  await agent?.kill("SIGKILL");
  await env.reset();
  // a slow applier (a pause per target transaction of at most 5 rows): the queue holds a backlog of seconds
  agent = new AgentProcess(writeConfig(env.agentConfig({ heartbeatSeconds: 0.2, stallSeconds: 3, apply: { maxRows: 5, sharedStream: false } })), { DATASYNC_TEST_APPLY_DELAY_MS: "250" });
  await agent.waitStreaming(["r1", "r2"]);
  for (const n of ["r1", "r2"]) await agent.waitForLog((l) => l.replica === n && /snapshot complete/.test(l.msg ?? ""), 60_000);
  const writer = new Writer(env.src);
  writer.start(2);
  await new Promise((r) => setTimeout(r, 3000));
  const proxy = env.proxy("source");
  const mark = agent.logs.length;
  const stalledAt = Date.now();
  expect(proxy.stall("binlog")).toBe(2); // a binlog connection per replica (apply.sharedStream off, the default; the first test shares one)
  await new Promise((r) => setTimeout(r, 1000));
  const stats = await writer.stop();
  // the backlog takes far longer than this to apply at 20 rows a second: detection must not wait for it
  for (const n of ["r1", "r2"]) {
    await agent.waitForLog((l) => agent!.logs.indexOf(l) >= mark && l.replica === n && /the binlog connection stalled/.test(l.msg ?? ""), 20_000);
  }
  expect(Date.now() - stalledAt).toBeLessThan(20_000);
  expect(stats.committed).toBeGreaterThan(100);
  proxy.resume();
  // the rest of the backlog at full speed (a restart resumes from the checkpoints)
  expect(await agent.kill("SIGTERM")).toBe(0);
  agent = new AgentProcess(writeConfig(env.agentConfig({ heartbeatSeconds: 0.2 })));
  for (const r of env.reps) await waitCaughtUp(env.src, r, "chaos", 90_000);
  const tables = await tableList(env.src, "shop");
  const want = await checksums(env.src, tables);
  for (const r of env.reps) expect(await checksums(r, tables)).toEqual(want);
  await agent.kill("SIGTERM");
});
