// The engine path: the SyncGroup provider serialized from the COMPILED code in a plain node process (as
// pulumi.dynamic.Resource does), loaded by @pulumi/pulumi/cmd/dynamic-provider, and driven over gRPC the
// way the Pulumi engine drives it: Configure, Check, Create, Diff, Update, Delete against real servers.
// Also: state created from one checkout path is deleted by a host started in a copy at another path (no
// absolute path in a serialized provider), the state version is honoured, and a membership's delete keeps
// the replica's checkpoints while the group's delete removes them. Runs per flavor (vitest projects): versions
// are read from the servers; "another version" is declared, since one binary runs one version.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createRequire } from "node:module";
import { cpSync, existsSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { startServers, defaultFlavor, type TestServer } from "../support/servers.js";

const require = createRequire(import.meta.url);
const grpc = require("@grpc/grpc-js");
const provrpc = require("@pulumi/pulumi/proto/provider_grpc_pb");
const provpb = require("@pulumi/pulumi/proto/provider_pb");
const { Struct } = require("google-protobuf/google/protobuf/struct_pb");

const UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";
const URN = "urn:pulumi:dev::datasync::pulumi-nodejs:dynamic/datasync:SyncGroup::orders";

let host: ChildProcess;
let client: any;
let providerText: string;
let replicaProviderText: string;
let primary: TestServer, r1: TestServer, r2: TestServer, lc: TestServer;

const flavor = defaultFlavor();
const FLAVOR = flavor === "mariadb" ? "MariaDB" : "MySQL";
/** major.minor the servers run (read live), and a version of the same flavor they do not run */
let V: string;
const OTHER = flavor === "mariadb" ? "10.6" : "8.4";
const esc = (t: string) => t.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

function call<T = any>(method: string, req: any, via = client): Promise<T> {
  return new Promise((resolve, reject) => via[method](req, (err: any, resp: T) => (err ? reject(err) : resolve(resp))));
}

/** A dynamic-provider host (as the engine starts it: in the project directory), configured, and its client. */
async function startHost(cwd: string): Promise<{ proc: ChildProcess; client: any }> {
  const proc = spawn(process.execPath, [join(cwd, "node_modules/@pulumi/pulumi/cmd/dynamic-provider/index.js"), "127.0.0.1:1"], { cwd, stdio: ["ignore", "pipe", "pipe"] });
  const port = await new Promise<number>((resolve, reject) => {
    proc.once("exit", (code) => reject(new Error(`dynamic-provider exited (${code})`)));
    proc.stdout!.once("data", (b: Buffer) => resolve(Number(String(b).split("\n")[0].trim())));
  });
  const c = new provrpc.ResourceProviderClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const req = new provpb.ConfigureRequest();
  req.setArgs(struct({}));
  req.setAcceptsecrets(true);
  await call("configure", req, c);
  return { proc, client: c };
}

/** A copy of the checkout's runtime (package.json, dist/, node_modules as a link) at a new temporary path. */
function checkoutCopy(tag: string): string {
  const dir = mkdtempSync(join(tmpdir(), `datasync-${tag}-`));
  cpSync("package.json", join(dir, "package.json"));
  cpSync("dist", join(dir, "dist"), { recursive: true });
  symlinkSync(realpathSync("node_modules"), join(dir, "node_modules"));
  return dir;
}
const struct = (o: object) => Struct.fromJavaScript(JSON.parse(JSON.stringify(o)));

async function check(news: any, olds: any = {}) {
  const req = new provpb.CheckRequest();
  req.setUrn(URN);
  req.setOlds(struct(olds));
  req.setNews(struct({ ...news, __provider: providerText }));
  const resp = await call("check", req);
  return { inputs: resp.getInputs().toJavaScript(), failures: resp.getFailuresList().map((f: any) => ({ property: f.getProperty(), reason: f.getReason() })) };
}
async function create(props: any) {
  const req = new provpb.CreateRequest();
  req.setUrn(URN);
  req.setProperties(struct(props));
  const resp = await call("create", req);
  return { id: resp.getId(), outs: resp.getProperties().toJavaScript() };
}
async function diff(id: string, olds: any, news: any, urn = URN, text = providerText) {
  const req = new provpb.DiffRequest();
  req.setId(id);
  req.setUrn(urn);
  req.setOlds(struct(olds));
  req.setNews(struct({ ...news, __provider: text }));
  const resp = await call("diff", req);
  return { changes: resp.getChanges(), replaces: resp.getReplacesList() };
}
async function update(id: string, olds: any, news: any) {
  const req = new provpb.UpdateRequest();
  req.setId(id);
  req.setUrn(URN);
  req.setOlds(struct(olds));
  req.setNews(struct(news));
  return (await call("update", req)).getProperties().toJavaScript();
}
async function del(id: string, props: any, via = client, urn = URN) {
  const req = new provpb.DeleteRequest();
  req.setId(id);
  req.setUrn(urn);
  req.setProperties(struct(props));
  await call("delete", req, via);
}

const ep = (s: TestServer) => ({ host: "127.0.0.1", port: s.port, user: "root", password: "", version: V });
const group = (replicas = [r1, r2]) => ({ group: "orders", primary: ep(primary), replicas: replicas.map((s, i) => ({ name: `r${i + 1}`, ...ep(s) })), databases: ["shop"] });
async function checkpoints(s: TestServer): Promise<string[]> {
  const t = await s.query<any[]>("SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = '_datasync' AND TABLE_NAME = 'checkpoints'");
  if (t.length === 0) return [];
  return (await s.query<any[]>("SELECT group_name FROM _datasync.checkpoints ORDER BY 1")).map((r) => r.group_name);
}
/** what the agent would have written: a checkpoint of the group on the replica */
async function fakeCheckpoint(s: TestServer, group: string): Promise<void> {
  await s.query("CREATE DATABASE IF NOT EXISTS _datasync");
  await s.query("CREATE TABLE IF NOT EXISTS _datasync.checkpoints (group_name VARCHAR(40) NOT NULL PRIMARY KEY, binlog_pos BIGINT NOT NULL)");
  await s.query(`INSERT INTO _datasync.checkpoints VALUES ('${group}', 4) ON DUPLICATE KEY UPDATE binlog_pos = 4`);
}
async function members(s: TestServer): Promise<string[]> {
  const db = await s.query<any[]>("SHOW DATABASES LIKE '_datasync'");
  if (db.length === 0) return [];
  return (await s.query<any[]>("SELECT group_name, replica FROM _datasync.members")).map((r) => `${r.group_name}/${r.replica}`);
}

beforeAll(async () => {
  if (!existsSync("dist/provider/index.js")) throw new Error("dist/ is missing: run `npm run build` first (npm test does)");
  const ser = spawnSync(process.execPath, ["test/support/provider-serialize.mjs"], { encoding: "utf8" });
  if (ser.status !== 0) throw new Error(`serializing the provider failed: ${ser.stderr}`);
  providerText = JSON.parse(ser.stdout).SyncGroup;
  replicaProviderText = JSON.parse(ser.stdout).ReplicaServer;
  [[primary, r1, r2, lc]] = await Promise.all([
    // lc: a replica with names stored in lower case, as Azure creates every flexible server (lower_case_table_names=1)
    // (an initialize-time option: MySQL 8+ refuses to start with another value than its datadir was initialized with)
    startServers([{ name: "eng-primary" }, { name: "eng-r1", noBinlog: true }, { name: "eng-r2", noBinlog: true }, { name: "eng-lc", noBinlog: true, initArgs: ["--lower-case-table-names=1"] }]),
    (async () => {
      // any engine address will do: the host only connects back for logging
      host = spawn(process.execPath, ["node_modules/@pulumi/pulumi/cmd/dynamic-provider/index.js", "127.0.0.1:1"], { stdio: ["ignore", "pipe", "pipe"] });
      const port = await new Promise<number>((resolve, reject) => {
        host.once("exit", (code) => reject(new Error(`dynamic-provider exited (${code})`)));
        host.stdout!.once("data", (b: Buffer) => resolve(Number(String(b).split("\n")[0].trim())));
      });
      client = new provrpc.ResourceProviderClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
      const req = new provpb.ConfigureRequest();
      req.setArgs(struct({}));
      req.setAcceptsecrets(true);
      const resp = await call("configure", req);
      expect(resp.getAcceptsecrets()).toBe(false); // so the engine strips secrets and re-marks outputs
    })(),
  ]);
  await primary.query("CREATE DATABASE shop; CREATE TABLE shop.orders (id INT PRIMARY KEY)");
  V = /^(\d+\.\d+)/.exec((await primary.query<any[]>("SELECT VERSION() AS v"))[0].v)![1];
  expect(V).not.toBe(OTHER);
}, 300_000); // four servers and a provider host: slow on a loaded 2-core machine

afterAll(async () => {
  client?.close();
  if (host && host.exitCode === null) host.kill("SIGTERM");
  await Promise.all([primary, r1, r2, lc].filter(Boolean).map((s) => s.destroy()));
});

describe("engine path (dynamic-provider host over gRPC)", () => {
  it("Check fails six replicas and a version mismatch with clear reasons", async () => {
    const g: any = group();
    g.replicas = [1, 2, 3, 4, 5, 6].map((i) => ({ name: `r${i}`, host: `10.0.0.${i}`, user: "u", password: "p", version: i === 2 ? OTHER : V }));
    const { failures } = await check(g);
    expect(failures).toEqual([
      { property: "replicas", reason: expect.stringMatching(/6 replicas are declared, at most 5 are allowed per primary\. Remove 1 of them/) },
      {
        property: "replicas[1].version",
        reason: expect.stringMatching(
          new RegExp(`${FLAVOR} ${esc(OTHER)} \\(${esc(OTHER)}\\) differs from the primary's ${FLAVOR} ${esc(V)} \\(${esc(V)}\\); flavor and major\\.minor must be equal\\. Run the replica on ${FLAVOR} ${esc(V)}\\.`),
        ),
      },
    ]);
  });

  if (flavor === "mysql") {
    it("Check compares MySQL versions by major.minor: 8.0.x is 8.0; 8.0, 8.4 (LTS) and 9.x (innovation) differ", async () => {
      const at = (primary: string, versions: string[]) => ({
        group: "orders",
        primary: { host: "10.0.0.1", user: "u", password: "p", version: primary },
        replicas: versions.map((version, i) => ({ name: `r${i + 1}`, host: `10.0.1.${i + 1}`, user: "u", password: "p", version })),
        databases: ["shop"],
      });
      expect((await check(at("8.0", ["8.0.36", "8.0"]))).failures).toEqual([]);
      expect((await check(at("8.4", ["8.4.3"]))).failures).toEqual([]);
      const { failures } = await check(at("8.0", ["8.4", "9.7", "8.0.40"]));
      expect(failures).toEqual([
        { property: "replicas[0].version", reason: expect.stringMatching(/MySQL 8\.4 \(8\.4\) differs from the primary's MySQL 8\.0 \(8\.0\).*Run the replica on MySQL 8\.0\./) },
        { property: "replicas[1].version", reason: expect.stringMatching(/MySQL 9\.7 \(9\.7\) differs from the primary's MySQL 8\.0 \(8\.0\)/) },
      ]);
      // 9.x innovation releases: every minor is its own version
      expect((await check(at("9.7", ["9.6"]))).failures).toEqual([{ property: "replicas[0].version", reason: expect.stringMatching(/MySQL 9\.6 \(9\.6\) differs from the primary's MySQL 9\.7/) }]);
    });
  }

  it("Check passes a valid group and fills the derived inputs", async () => {
    const { inputs, failures } = await check(group());
    expect(failures).toEqual([]);
    expect(inputs.replicaNames).toEqual(["r1", "r2"]);
    expect(inputs.topology).toContain(`r2<br/>127.0.0.1:${r2.port}<br/>${FLAVOR} ${V}`);
    expect(JSON.parse(inputs.agentConfig).replicas).toHaveLength(2);
    expect(inputs.__provider).toBe(providerText);
  });

  it("Check defers values unknown at preview", async () => {
    const g: any = group();
    g.replicas[0].host = UNKNOWN;
    g.replicas[1].version = UNKNOWN;
    g.primary.password = UNKNOWN;
    const { inputs, failures } = await check(g);
    expect(failures).toEqual([]);
    expect(inputs.agentConfig).toBeUndefined(); // computed at create
    expect(inputs.topology).toContain("r1<br/>(known after create)");
    expect(inputs.topology).toContain("r2<br/>127.0.0.1");
  });

  it("Create, Diff, Update, Delete succeed against real servers", async () => {
    const { inputs } = await check(group());
    const { id, outs } = await create(inputs);
    expect(id).toBe("orders");
    expect(outs.liveVersions.primary).toMatch(new RegExp(`^${esc(V)}\\.`));
    expect(outs.__provider).toBe(providerText);
    expect(await members(r1)).toEqual(["orders/r1"]);
    expect(await members(r2)).toEqual(["orders/r2"]);

    expect(await diff(id, outs, inputs)).toEqual({ changes: provpb.DiffResponse.DiffChanges.DIFF_NONE, replaces: [] });
    const renamed = (await check({ ...group(), group: "billing" })).inputs;
    expect(await diff(id, outs, renamed)).toEqual({ changes: provpb.DiffResponse.DiffChanges.DIFF_SOME, replaces: ["group"] });
    const smaller = (await check(group([r1]))).inputs;
    expect(await diff(id, outs, smaller)).toEqual({ changes: provpb.DiffResponse.DiffChanges.DIFF_SOME, replaces: [] });

    const updated = await update(id, outs, smaller);
    expect(updated.replicaNames).toEqual(["r1"]);
    expect(await members(r2)).toEqual([]);
    expect(await members(r1)).toEqual(["orders/r1"]);

    await del(id, updated);
    expect(await members(r1)).toEqual([]);
  });

  it("Create fails with the live rule's message", async () => {
    const g: any = group();
    g.primary.version = OTHER;
    g.replicas.forEach((r: any) => (r.version = OTHER)); // consistent at preview, wrong live
    const { inputs, failures } = await check(g);
    expect(failures).toEqual([]);
    const err: any = await create(inputs).then((r) => new Error(`created: ${JSON.stringify(r.outs.liveVersions)}`), (e) => e);
    const msg = String(err.details ?? err.message);
    expect(msg).toMatch(new RegExp(`\\[rule 2\\] primary\\.version: declared ${FLAVOR} ${esc(OTHER)} \\("${esc(OTHER)}"\\) but source \\(127\\.0\\.0\\.1:\\d+\\) runs ${FLAVOR} ${esc(V)}`));
    expect(msg).toMatch(new RegExp(`\\[rule 2\\] replicas\\[1\\]\\.version: declared ${FLAVOR} ${esc(OTHER)} .* but replica r2 .* runs ${FLAVOR} ${esc(V)} .*Set replicas\\[1\\]\\.version to "${esc(V)}"`));
    expect(await members(r1)).toEqual([]);
  });
  it("Delete works from a copy of the checkout at another path (no absolute path in the serialized provider)", async () => {
    // the provider serialized in checkout A, the state created with it, A removed, the delete run by a host in B
    const a = checkoutCopy("a");
    let b: string | undefined;
    let hostB: { proc: ChildProcess; client: any } | undefined;
    try {
      writeFileSync(
        join(a, "serialize.mjs"),
        'import * as pulumi from "@pulumi/pulumi"; import { syncGroupProvider } from "./dist/provider/index.js";\n' +
          "const sf = await pulumi.runtime.serializeFunction(() => syncGroupProvider, { allowSecrets: true }); process.stdout.write(sf.text);\n",
      );
      const ser = spawnSync(process.execPath, ["serialize.mjs"], { cwd: a, encoding: "utf8" });
      expect(ser.status, ser.stderr).toBe(0);
      const textA = ser.stdout;
      for (const p of [a, realpathSync(a), resolve("."), "file://"]) expect(textA.includes(p), `serialized provider contains ${p}`).toBe(false);

      const { inputs } = await check(group());
      const { id, outs } = await create({ ...inputs, __provider: textA });
      expect(await members(r1)).toEqual(["orders/r1"]);
      await fakeCheckpoint(r1, "orders");

      b = checkoutCopy("b");
      rmSync(a, { recursive: true, force: true });
      hostB = await startHost(b);
      await del(id, { ...outs, __provider: textA }, hostB.client);
      expect(await members(r1)).toEqual([]);
      expect(await members(r2)).toEqual([]);
      expect(await checkpoints(r1)).toEqual([]); // the group itself is destroyed: checkpoints go too
    } finally {
      hostB?.client.close();
      hostB?.proc.kill("SIGTERM");
      rmSync(a, { recursive: true, force: true });
      if (b) rmSync(b, { recursive: true, force: true });
    }
  });

  it("honours the stored state version: older state updates (migration), newer state is refused", async () => {
    const { inputs } = await check(group());
    const { id, outs } = await create(inputs);
    expect(outs.stateVersion).toBe(2);
    const older = { ...outs, stateVersion: 1 };
    expect(await diff(id, older, inputs)).toEqual({ changes: provpb.DiffResponse.DiffChanges.DIFF_SOME, replaces: [] });
    const migrated = await update(id, older, inputs);
    expect(migrated.stateVersion).toBe(2);
    const err: any = await diff(id, { ...outs, stateVersion: 3 }, inputs).then(() => new Error("diff accepted newer state"), (e) => e);
    expect(err.details ?? err.message).toMatch(/written by a newer datasync \(state version 3; this one understands up to 2\)\. Upgrade the datasync package/);
    await del(id, migrated);
    expect(await members(r1)).toEqual([]);
  });

  it("a membership's delete keeps the replica's checkpoints; only the group's delete removes them", async () => {
    const RS_URN = "urn:pulumi:dev::datasync::pulumi-nodejs:dynamic/datasync:ReplicaServer::orders-r1";
    const m = { group: "orders", replicaName: "r1", ...ep(r1), primary: { version: V, host: "127.0.0.1", port: primary.port }, databases: ["shop"], __provider: replicaProviderText };
    const req = new provpb.CreateRequest();
    req.setUrn(RS_URN);
    req.setProperties(struct(m));
    const outs = (await call("create", req)).getProperties().toJavaScript();
    expect(await members(r1)).toEqual(["orders/r1"]);
    // a host unknown at preview (an Azure server being changed) is an update of the membership, not a replace
    const { __provider: _p, ...declared } = m;
    expect(await diff("orders/r1", outs, { ...declared, host: UNKNOWN }, RS_URN, replicaProviderText)).toEqual({ changes: provpb.DiffResponse.DiffChanges.DIFF_SOME, replaces: [] });
    expect(await diff("orders/r1", outs, { ...declared, host: "10.9.9.9" }, RS_URN, replicaProviderText)).toEqual({ changes: provpb.DiffResponse.DiffChanges.DIFF_SOME, replaces: ["host"] });
    await fakeCheckpoint(r1, "orders");
    await del("orders/r1", outs, client, RS_URN);
    expect(await members(r1)).toEqual([]);
    expect(await checkpoints(r1)).toEqual(["orders"]); // a re-added replica resumes from here

    const { inputs } = await check(group());
    const created = await create(inputs);
    await del(created.id, created.outs);
    expect(await checkpoints(r1)).toEqual([]);
  });

  it("Create applies rule 6 for lower_case_table_names: source 0 → replica 1 syncs lower-case names, refuses others", async () => {
    const g: any = { ...group([r1]), replicas: [{ name: "lc", ...ep(lc) }] };
    expect(String((await lc.query<any[]>("SELECT @@lower_case_table_names AS v"))[0].v)).toBe("1");
    const { inputs } = await check(g);
    const { id, outs } = await create(inputs); // shop.orders: every name in scope is lower case
    await del(id, outs);
    await primary.query("CREATE TABLE shop.OrderItems (id INT PRIMARY KEY)");
    try {
      const err: any = await create(inputs).then(() => new Error("created"), (e) => e);
      expect(err.details ?? err.message).toMatch(/\[rule 6\] replica lc \(127\.0\.0\.1:\d+\): lower_case_table_names is 1 .*the source has 0.*not lower case: shop\.OrderItems\. Rename it to lower case/);
    } finally {
      await primary.query("DROP TABLE shop.OrderItems");
    }
  });

  it("Create applies rule 3 for binlog retention against tolerateOutageSeconds", async () => {
    const [{ was }] = await primary.query<any[]>("SELECT @@GLOBAL.binlog_expire_logs_seconds AS was");
    await primary.query("SET GLOBAL binlog_expire_logs_seconds = 3600");
    try {
      const { inputs } = await check({ ...group([r1]), tolerateOutageSeconds: 7200 });
      const err: any = await create(inputs).then(() => new Error("created"), (e) => e);
      expect(err.details ?? err.message).toMatch(/\[rule 3\] source \(127\.0\.0\.1:\d+\): binlogs are kept 1 h \(binlog_expire_logs_seconds=3600\), less than the 2 h .*tolerateOutageSeconds/);
      const ok = await create((await check({ ...group([r1]), tolerateOutageSeconds: 1800 })).inputs);
      await del(ok.id, ok.outs);
    } finally {
      await primary.query("SET GLOBAL binlog_expire_logs_seconds = ?", [Number(was)]);
    }
  });
});
