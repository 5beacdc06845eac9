// The cutover's fence (agent/ops/fence.ts) while an application statement with a 4-byte character is running: MySQL
// 8.0.22+ fails any query of information_schema.PROCESSLIST then (its statement-text column is utf8mb3), and the
// fence read the open write transactions through it, so a cutover under a load that writes emoji aborted (CI run
// at f55fd2c: "Cannot convert string '\xF0\x9F\x98\x80'... from utf8mb4 to utf8mb3"). The fence must set read_only,
// end the open write transaction, name its session, and lift cleanly, on both flavors.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect } from "../../agent/db.js";
import { fence, liftFence } from "../../agent/ops/fence.js";
import { defaultFlavor, startServers, type TestServer } from "../support/servers.js";
import { endpoint } from "../support/agent.js";

const flavor = defaultFlavor();
let src: TestServer;

beforeAll(async () => {
  [src] = await startServers([{ name: "fence-src" }]);
  await src.query("CREATE DATABASE shop");
  await src.query("CREATE TABLE shop.t (id INT PRIMARY KEY, note VARCHAR(50) CHARACTER SET utf8mb4)");
}, 120_000);

afterAll(async () => {
  await src?.destroy();
});

describe(`fence (${flavor})`, () => {
  it("ends an open write transaction and names its session while a statement with an emoji runs", async () => {
    const ctl = await connect(endpoint(src) as any, "source");
    const aux = await connect(endpoint(src) as any, "source");
    const writer = await src.connect();
    const sleeper = await src.connect();
    try {
      await writer.query("SET NAMES utf8mb4");
      await writer.query("BEGIN");
      await writer.query("INSERT INTO shop.t VALUES (1, 'note 😀')");
      const [[w]] = await writer.query<any[]>("SELECT CONNECTION_ID() AS id");
      await sleeper.query("SET NAMES utf8mb4");
      // a running statement whose text holds a 4-byte character, for as long as the fence takes
      const running = sleeper.query("SELECT 'note 😀' AS n, SLEEP(6) AS s").catch(() => undefined);
      await new Promise((r) => setTimeout(r, 300));
      const r = await fence(ctl, aux, 5000, 300, []);
      try {
        expect(r.error).toBeUndefined();
        expect(r.ok).toBe(true);
        expect(r.killed.map((k) => k.thread)).toEqual([Number(w.id)]);
        expect(r.killed[0].user).toBe("root");
        expect(r.killed[0].rowsModified).toBe(1);
        const [[ro]] = await ctl.query<any[]>("SELECT @@GLOBAL.read_only AS r");
        expect(Number(ro.r)).toBe(1);
      } finally {
        await liftFence(ctl, r.wasReadOnly);
      }
      const [[ro2]] = await ctl.query<any[]>("SELECT @@GLOBAL.read_only AS r");
      expect(Number(ro2.r)).toBe(0);
      // the killed transaction left nothing
      expect(await src.query<any[]>("SELECT * FROM shop.t")).toEqual([]);
      await running;
    } finally {
      for (const c of [ctl, aux, writer, sleeper]) c.destroy();
    }
  }, 60_000);
});
