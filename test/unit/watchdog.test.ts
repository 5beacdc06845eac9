// The stuck-apply watchdog's pure parts (agent/apply/watchdog.ts): statement summaries carry the kind and
// object and never a value; ApplyWatch reports a stall only with work queued and only past the limit, once.
import { describe, expect, it } from "vitest";
import { ApplyWatch, describeQuery, describeStatement } from "../../agent/apply/watchdog.js";

describe("describeStatement / describeQuery", () => {
  it("names the kind and the object, never a value", () => {
    expect(describeStatement("INSERT INTO `shop`.`t` (`id`, `v`) VALUES (1, 'secret')")).toBe("insert into `shop`.`t`");
    expect(describeStatement("SET STATEMENT system_versioning_insert_history = 1 FOR INSERT INTO `a`.`b` (x) VALUES ('s')")).toBe("insert into `a`.`b`");
    expect(describeStatement("  /* c */ ALTER TABLE `shop`.`orders` ADD COLUMN c INT DEFAULT 'x'")).toBe("alter table `shop`.`orders`");
    expect(describeStatement("UPDATE `s`.`t` SET v = 'secret' WHERE id = 2")).toBe("update `s`.`t`");
    expect(describeStatement("DELETE FROM `s`.`t` WHERE id = 'secret'")).toBe("delete from `s`.`t`");
    expect(describeStatement("DROP TABLE IF EXISTS `s`.`t`")).toBe("drop table `s`.`t`");
    expect(describeStatement("CREATE TABLE t2 (a INT)")).toBe("create table t2");
    expect(describeStatement("CALL secret('x')")).toBe("other statement");
  });

  it("a multi-statement query: the table statements, not transaction control nor the checkpoint", () => {
    const q = ["START TRANSACTION", "SET SESSION foreign_key_checks = 0", "INSERT INTO `shop`.`t` (id) VALUES (1)", "UPDATE `shop`.`u` SET v = 'secret;' WHERE id = 3", "INSERT INTO `shop`.`t` (id) VALUES (2)", "INSERT INTO `_datasync`.`checkpoints` (a) VALUES ('g') ON DUPLICATE KEY UPDATE a = 1", "COMMIT"].join(";\n");
    expect(describeQuery(q)).toBe("insert into `shop`.`t`, update `shop`.`u`");
    expect(describeQuery("START TRANSACTION;\nUPDATE _datasync.checkpoints SET x = 1;\nCOMMIT")).toBe("checkpoint");
    expect(describeQuery("COMMIT")).toBe("commit");
    expect(describeQuery(["a", "b", "c", "d", "e", "f"].map((t) => `DELETE FROM \`d\`.\`${t}\` WHERE id = 1`).join(";\n"))).toBe("delete from `d`.`a`, delete from `d`.`b`, delete from `d`.`c`, delete from `d`.`d` and 2 more");
  });
});

describe("ApplyWatch", () => {
  it("reports a stall once, only with work and past the limit, naming the statement in flight; a step clears it", async () => {
    let now = 1000;
    const w = new ApplyWatch(() => now);
    w.waiting("applying 3 transaction(s)");
    let settle!: () => void;
    const p = w.track("START TRANSACTION;\nALTER TABLE `s`.`t` ADD c INT", new Promise<void>((r) => (settle = r)));
    now += 4000;
    expect(w.check(true, 5000)).toBeNull();
    now += 2000;
    const s = w.check(true, 5000)!;
    expect(s).toMatchObject({ seconds: 6, waitingOn: "statement: alter table `s`.`t`", fresh: true });
    expect(w.check(true, 5000)!.fresh).toBe(false);
    settle();
    await p;
    await Promise.resolve();
    expect(w.check(true, 5000)).toBeNull();
    expect(w.waitingOn).toBe("applying 3 transaction(s)");
    // nothing queued: never a stall, however long
    now += 60_000;
    expect(w.check(false, 5000)).toBeNull();
    w.waiting("the watermark limit");
    now += 6000;
    expect(w.check(true, 5000)).toMatchObject({ waitingOn: "the watermark limit", fresh: true });
  });

  it("a failed statement is a step too (the loop's error handling runs), and track passes the rejection on", async () => {
    let now = 0;
    const w = new ApplyWatch(() => now);
    const p = w.track("DELETE FROM `a`.`b`", Promise.reject(new Error("boom")));
    now += 10_000;
    await expect(p).rejects.toThrow("boom");
    expect(w.statement).toBeNull();
    expect(w.check(true, 5000)).toBeNull();
  });
});
