// Five replicas at once; a replica server killed while the writer runs (the others keep up, it catches
// up after its restart); the source restarted (the agent reconnects and continues).
import { afterAll, beforeAll, expect, it } from "vitest";
import { startServers, type TestServer } from "../support/servers.js";
import { AgentProcess, checksums, makeConfig, tableList, waitCaughtUp, waitFor, writeConfig } from "../support/agent.js";
import { SCHEMA_SQL, Writer } from "../support/load.js";

let src: TestServer;
let reps: TestServer[];
let agent: AgentProcess;

beforeAll(async () => {
  [src, ...reps] = await startServers([{ name: "f-src" }, ...[1, 2, 3, 4, 5].map((i) => ({ name: `f-r${i}` }))]);
  agent = new AgentProcess(writeConfig(makeConfig(src, reps)));
  await agent.waitStreaming(["r1", "r2", "r3", "r4", "r5"]);
  for (const s of SCHEMA_SQL.filter((q) => !q.includes("audit"))) await src.query(s);
});

afterAll(async () => {
  await agent?.kill("SIGKILL");
  await Promise.all([src, ...reps].map((s) => s?.destroy()));
});

async function checkpointOf(r: TestServer): Promise<string> {
  const [row] = await r.query<any[]>("SELECT CONCAT(binlog_file, ':', binlog_pos) AS p FROM _datasync.checkpoints WHERE group_name = 'test'");
  return row.p;
}

it("syncs five replicas; a killed replica does not stall the others and catches up; a source restart is survived", async () => {
  const writer = new Writer(src);
  writer.start(2);
  await new Promise((r) => setTimeout(r, 1500));

  // replica 3 dies while the writer runs
  const down = reps[2];
  await down.kill();
  const frozenAt = Date.now();
  await agent.waitForLog((l) => l.replica === "r3" && l.level === "warn" && /unavailable|lost|refused|gone/i.test(l.msg ?? ""), 20_000);
  // the other four keep up meanwhile: each reaches a source position written after the crash
  await new Promise((r) => setTimeout(r, 1500));
  const others = reps.filter((r) => r !== down);
  for (const r of others) await waitCaughtUp(src, r, "test", 30_000);
  const ready = await agent.http("/readyz");
  expect(ready.status).toBe(503);
  const r3 = ready.body.replicas.find((x: any) => x.name === "r3");
  // between retries it is "down"; while a retry tries to connect, "connecting"
  expect(["down", "connecting"]).toContain(r3.state);
  expect(r3.connected).toBe(false);
  expect(ready.body.replicas.filter((x: any) => x.state === "streaming").map((x: any) => x.name)).toEqual(["r1", "r2", "r4", "r5"]);
  expect(Date.now() - frozenAt).toBeLessThan(60_000);

  // it comes back and catches up from its own checkpoint
  await down.start();
  await agent.waitForLog((l) => l.replica === "r3" && l.msg === "streaming" && Date.parse(l.time) > frozenAt, 40_000);

  // the source restarts under load: the agent reconnects and continues
  await writer.stop();
  const before = await checkpointOf(reps[0]);
  await src.restart();
  const writer2 = new Writer(src);
  writer2.start(1);
  await new Promise((r) => setTimeout(r, 2000));
  const stats = await writer2.stop();
  expect(stats.committed).toBeGreaterThan(5);
  for (const r of reps) await waitCaughtUp(src, r, "test", 60_000);
  expect(await checkpointOf(reps[0])).not.toBe(before);
  // the binlog rotated at the restart: positions are in the new file
  expect(await checkpointOf(reps[0])).toMatch(/binlog\.00000[2-9]:/);

  const tables = await tableList(src, "shop");
  const want = await checksums(src, tables);
  for (const r of reps) expect(await checksums(r, tables)).toEqual(want);
  await waitFor(async () => (await agent.http("/readyz")).status === 200, 20_000, "readyz 200 after recovery");
});
