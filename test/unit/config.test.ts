// Unit tests for agent/config.ts: the agent config contract of DESIGN.md (schema, defaults, every problem
// with the path of its key), loading from a file (JSON/YAML) or DATASYNC_CONFIG, passwords and TLS defaults.
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { baseServerId, loadConfig, redactConfig, resolvePassword, tlsModeOf, validateConfig } from "../../agent/config.js";
import { connectionOptions } from "../../agent/db.js";
import { ConfigError } from "../../agent/errors.js";

const dir = mkdtempSync(join(tmpdir(), "datasync-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function base(): any {
  return {
    group: "orders",
    source: { host: "10.0.0.5", user: "datasync", password: "s3cret-source" },
    replicas: [
      { name: "westeurope", host: "10.0.1.5", user: "datasync", password: "s3cret-west" },
      { name: "northeurope", host: "10.0.2.5", user: "datasync", passwordEnv: "NORTH_PW" },
    ],
    databases: ["shop"],
  };
}

/** the problems validateConfig reports for a config changed by `edit` (fails the test when it is accepted) */
function problemsOf(edit: (c: any) => void): string[] {
  const c = base();
  edit(c);
  try {
    validateConfig(c);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as ConfigError).problems;
  }
  throw new Error("expected the config to be refused");
}

describe("validateConfig: apply.readerThread", () => {
  it("is off by default, on when asked (with the shared stream, its default)", () => {
    expect(validateConfig(base()).apply.readerThread).toBe(false);
    expect(validateConfig({ ...base(), apply: { readerThread: true } }).apply.readerThread).toBe(true);
    expect(validateConfig({ ...base(), apply: { readerThread: true, sharedStream: true } }).apply.sharedStream).toBe(true);
  });

  it("without the shared stream is refused, naming both keys and the fix", () => {
    const p = problemsOf((c) => (c.apply = { readerThread: true, sharedStream: false }));
    expect(p).toHaveLength(1);
    expect(p[0]).toMatch(/apply\.readerThread/);
    expect(p[0]).toMatch(/sharedStream: true or readerThread: false/);
  });

  it("is a boolean", () => {
    expect(problemsOf((c) => (c.apply = { readerThread: "yes" })).join("\n")).toMatch(/apply\.readerThread/);
  });
});

describe("validateConfig: a valid config", () => {
  it("accepts the minimal config and fills the documented defaults", () => {
    const c = validateConfig(base());
    expect(c.group).toBe("orders");
    expect(c.source.port).toBe(3306);
    expect(c.replicas.map((r) => r.port)).toEqual([3306, 3306]);
    expect(c.http.listen).toBe("127.0.0.1:9464");
    expect(c.readyLagSeconds).toBe(30);
    expect(c.tables).toBeUndefined();
    expect(c.source.serverId).toBeUndefined();
  });

  it("keeps explicit values instead of the defaults", () => {
    const c = validateConfig({
      ...base(),
      source: { host: "db.example.com", port: 3307, user: "u", password: "p", serverId: 4001, tls: { mode: "required" } },
      http: { listen: "0.0.0.0:9464" },
      readyLagSeconds: 2.5,
      tables: { include: ["shop.*"], exclude: ["shop.audit_*"] },
    });
    expect(c.source.port).toBe(3307);
    expect(c.source.serverId).toBe(4001);
    expect(c.http.listen).toBe("0.0.0.0:9464");
    expect(c.readyLagSeconds).toBe(2.5);
    expect(c.tables).toEqual({ include: ["shop.*"], exclude: ["shop.audit_*"] });
  });

  it("accepts exactly 5 replicas and a bracketed IPv6 listen address", () => {
    const c = validateConfig({
      ...base(),
      replicas: [1, 2, 3, 4, 5].map((i) => ({ name: `r${i}`, host: `10.1.0.${i}`, user: "u" })),
      http: { listen: "[::1]:9464" },
    });
    expect(c.replicas).toHaveLength(5);
  });

  it("returns a frozen object (validated once, not changed later)", () => {
    const c = validateConfig(base());
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.source)).toBe(true);
    expect(Object.isFrozen(c.replicas[0])).toBe(true);
    expect(() => {
      (c.source as any).host = "x";
    }).toThrow(TypeError);
  });

  it("allows the same host as the primary on another port", () => {
    expect(() => validateConfig({ ...base(), replicas: [{ name: "a", host: "10.0.0.5", port: 3307, user: "u" }] })).not.toThrow();
  });
});

describe("validateConfig: unknown keys name their path", () => {
  it("a typo in source names source and the key", () => {
    const p = problemsOf((c) => (c.source.hots = "10.0.0.9"));
    expect(p).toHaveLength(1);
    expect(p[0]).toMatch(/^source\b/);
    expect(p[0]).toContain('"hots"');
    expect(p[0]).toMatch(/unknown key/);
  });

  it("a typo in the second replica names replicas[1] and the key", () => {
    const p = problemsOf((c) => (c.replicas[1].passwrd = "x"));
    expect(p).toHaveLength(1);
    expect(p[0]).toMatch(/^replicas\[1\]/);
    expect(p[0]).toContain('"passwrd"');
  });

  it("unknown keys at the root, in tls and in tables are all reported at once", () => {
    const p = problemsOf((c) => {
      c.extra = 1;
      c.source.tls = { mode: "disabled", sslmode: "x" };
      c.tables = { includes: ["shop.*"] };
    });
    expect(p).toHaveLength(3);
    expect(p.some((m) => m.startsWith("extra:") && m.includes('"extra"'))).toBe(true);
    expect(p.some((m) => m.startsWith("source.tls.sslmode:") && m.includes('"sslmode"'))).toBe(true);
    expect(p.some((m) => m.startsWith("tables.includes:") && m.includes('"includes"'))).toBe(true);
  });

  it("two unknown keys in one object are named in one problem", () => {
    const p = problemsOf((c) => Object.assign(c.source, { a: 1, b: 2 }));
    expect(p).toHaveLength(1);
    expect(p[0]).toContain('"a"');
    expect(p[0]).toContain('"b"');
    expect(p[0]).toContain("unknown keys");
  });
});

describe("validateConfig: missing required keys", () => {
  it.each([
    ["group", (c: any) => delete c.group],
    ["source", (c: any) => delete c.source],
    ["source.host", (c: any) => delete c.source.host],
    ["source.user", (c: any) => delete c.source.user],
    ["replicas", (c: any) => delete c.replicas],
    ["replicas[0].name", (c: any) => delete c.replicas[0].name],
    ["replicas[1].host", (c: any) => delete c.replicas[1].host],
    ["databases", (c: any) => delete c.databases],
  ])("%s", (path, edit) => {
    const p = problemsOf(edit);
    expect(p).toContain(`${path}: required key is missing`);
  });

  it("reports several missing keys together", () => {
    const p = problemsOf((c) => {
      delete c.group;
      delete c.source.user;
      delete c.databases;
    });
    expect(p).toEqual(expect.arrayContaining(["group: required key is missing", "source.user: required key is missing", "databases: required key is missing"]));
    expect(p).toHaveLength(3);
  });

  it("an empty object lists the four required top-level keys", () => {
    expect(() => validateConfig({})).toThrow(ConfigError);
    try {
      validateConfig({});
    } catch (e) {
      const p = (e as ConfigError).problems;
      for (const k of ["group", "source", "replicas", "databases"]) expect(p).toContain(`${k}: required key is missing`);
    }
  });
});

describe("validateConfig: bad types and out-of-range values", () => {
  it.each([
    ["source.port", (c: any) => (c.source.port = "3306"), /expected number/],
    ["source.port", (c: any) => (c.source.port = 0), /small/i],
    ["source.port", (c: any) => (c.source.port = 70000), /big/i],
    ["source.port", (c: any) => (c.source.port = 3306.5), /int/i],
    ["replicas[0].port", (c: any) => (c.replicas[0].port = -1), /small/i],
    ["source.serverId", (c: any) => (c.source.serverId = 0), /small/i],
    ["source.serverId", (c: any) => (c.source.serverId = 2 ** 32), /big/i],
    ["source.host", (c: any) => (c.source.host = ""), /small|least/i],
    ["source.user", (c: any) => (c.source.user = 42), /expected string/],
    ["source.password", (c: any) => (c.source.password = 12345), /expected string/],
    ["readyLagSeconds", (c: any) => (c.readyLagSeconds = 0), /small|>0/i],
    ["readyLagSeconds", (c: any) => (c.readyLagSeconds = -5), /small/i],
    ["readyLagSeconds", (c: any) => (c.readyLagSeconds = "30"), /expected number/],
    ["readyLagSeconds", (c: any) => (c.readyLagSeconds = 86401), /big/i],
    ["databases", (c: any) => (c.databases = "shop"), /expected array/],
    ["databases", (c: any) => (c.databases = []), /at least one database/],
    ["replicas", (c: any) => (c.replicas = {}), /expected array/],
    ["replicas", (c: any) => (c.replicas = []), /at least one replica/],
    ["source.tls.mode", (c: any) => (c.source.tls = { mode: "verify-full" }), /verify-identity/],
    ["http.listen", (c: any) => (c.http = { listen: "9464" }), /host:port/],
    ["http.listen", (c: any) => (c.http = { listen: "0.0.0.0" }), /host:port/],
    ["tables.include[0]", (c: any) => (c.tables = { include: [""] }), /small|least/i],
  ])("%s: %s", (path, edit, msg) => {
    const p = problemsOf(edit);
    const mine = p.filter((m) => m.startsWith(`${path}:`));
    expect(mine, p.join("\n")).toHaveLength(1);
    expect(mine[0]).toMatch(msg);
  });

  it("a whole-config non-object is refused", () => {
    expect(() => validateConfig(null)).toThrow(ConfigError);
    expect(() => validateConfig([])).toThrow(ConfigError);
    expect(() => validateConfig("group: x")).toThrow(ConfigError);
  });
});

describe("validateConfig: topology rules (rule 1)", () => {
  it("refuses 6 replicas, naming the limit", () => {
    const p = problemsOf((c) => (c.replicas = [1, 2, 3, 4, 5, 6].map((i) => ({ name: `r${i}`, host: `10.1.0.${i}`, user: "u" }))));
    expect(p).toHaveLength(1);
    expect(p[0]).toMatch(/^replicas: /);
    expect(p[0]).toMatch(/at most 5/);
  });

  it("refuses two replicas with the same name", () => {
    const p = problemsOf((c) => (c.replicas[1].name = "westeurope"));
    expect(p).toHaveLength(1);
    expect(p[0]).toMatch(/^replicas\[1\]\.name: "westeurope" is already the name of replicas\[0\]/);
    expect(p[0]).toMatch(/Rename/);
  });

  it("refuses the same endpoint twice, also spelled differently (case, default port)", () => {
    const p = problemsOf((c) => {
      c.replicas[0].host = "DB2.example.com";
      c.replicas[1].host = "db2.example.com";
      c.replicas[1].port = 3306;
    });
    expect(p).toHaveLength(1);
    expect(p[0]).toMatch(/^replicas\[1\]: endpoint db2\.example\.com:3306 is already replicas\[0\]/);
  });

  it("refuses the primary as a replica", () => {
    const p = problemsOf((c) => (c.replicas[1].host = "10.0.0.5"));
    expect(p).toHaveLength(1);
    expect(p[0]).toMatch(/^replicas\[1\]: endpoint 10\.0\.0\.5:3306 is the primary itself/);
  });

  it("sees localhost, ::1 and 127.0.0.1 as the same server", () => {
    const p = problemsOf((c) => {
      c.source.host = "127.0.0.1";
      c.replicas[0].host = "localhost";
      c.replicas[1].host = "::1";
    });
    expect(p.filter((m) => /primary itself/.test(m))).toHaveLength(2);
  });

  it("refuses a replica name that is not a valid identifier", () => {
    const p = problemsOf((c) => (c.replicas[0].name = "west europe"));
    expect(p[0]).toMatch(/^replicas\[0\]\.name: /);
  });

  it("refuses more than one of password, passwordEnv and passwordFile", () => {
    const p = problemsOf((c) => {
      c.source.passwordEnv = "SRC_PW";
      c.replicas[0].passwordFile = "/run/secrets/pw";
    });
    expect(p).toEqual(expect.arrayContaining([expect.stringMatching(/^source: give at most one of password/), expect.stringMatching(/^replicas\[0\]: give at most one/)]));
  });
});

describe("validateConfig: databases", () => {
  it.each(["mysql", "sys", "information_schema", "performance_schema", "MySQL", "_datasync"])("refuses the system schema %s", (db) => {
    const p = problemsOf((c) => (c.databases = ["shop", db]));
    expect(p).toHaveLength(1);
    expect(p[0]).toMatch(/^databases\[1\]: /);
    expect(p[0]).toContain(`"${db}"`);
    expect(p[0]).toMatch(/system schema/);
  });

  it("refuses a database listed twice and an invalid name", () => {
    const p = problemsOf((c) => (c.databases = ["shop", "a.b", "shop"]));
    expect(p).toEqual(expect.arrayContaining([expect.stringMatching(/^databases\[1\]: "a\.b" is not a valid database name/), expect.stringMatching(/^databases\[2\]: "shop" is listed twice/)]));
  });

  it("reports topology and database problems together", () => {
    const p = problemsOf((c) => {
      c.replicas[1].name = "westeurope";
      c.databases = ["mysql"];
    });
    expect(p).toHaveLength(2);
  });
});

describe("validateConfig: group name [a-z0-9][a-z0-9-]{0,39}", () => {
  it.each(["a", "orders", "0rders", "eu-west-1", "a".repeat(40)])("accepts %s", (g) => {
    expect(validateConfig({ ...base(), group: g }).group).toBe(g);
  });
  it.each(["", "Orders", "-orders", "orders_eu", "orders.eu", "a".repeat(41), "ördersx"])("refuses %j", (g) => {
    const p = problemsOf((c) => (c.group = g));
    expect(p).toHaveLength(1);
    expect(p[0]).toMatch(/^group: .*\[a-z0-9\]\[a-z0-9-\]\{0,39\}/);
  });
});

describe("ConfigError", () => {
  it("lists every problem in its message", () => {
    try {
      validateConfig({ ...base(), group: "BAD", readyLagSeconds: -1 });
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      expect((e as Error).name).toBe("ConfigError");
      expect((e as Error).message).toMatch(/^invalid configuration:/);
      expect((e as Error).message).toContain("group:");
      expect((e as Error).message).toContain("readyLagSeconds:");
    }
  });
});

describe("loadConfig", () => {
  const yamlText = `# a comment
group: orders
source:
  host: 10.0.0.5
  user: datasync
  password: "s3cret"
replicas:
  - { name: westeurope, host: 10.0.1.5, user: datasync }
databases: [shop]
tables: { include: ["shop.*"], exclude: ["shop.audit_*"] }
`;

  it("reads a JSON file", () => {
    const f = join(dir, "c.json");
    writeFileSync(f, JSON.stringify(base()));
    const c = loadConfig(f, {});
    expect(c.replicas[1].name).toBe("northeurope");
    expect(c.source.port).toBe(3306);
  });

  it("reads a YAML file (with a .json-less name) and applies defaults", () => {
    const f = join(dir, "c.yaml");
    writeFileSync(f, yamlText);
    const c = loadConfig(f, {});
    expect(c.source.host).toBe("10.0.0.5");
    expect(c.replicas[0].port).toBe(3306);
    expect(c.tables?.exclude).toEqual(["shop.audit_*"]);
    expect(c.readyLagSeconds).toBe(30);
  });

  it("reads DATASYNC_CONFIG as JSON (leading whitespace allowed) or YAML", () => {
    expect(loadConfig(undefined, { DATASYNC_CONFIG: `\n  ${JSON.stringify(base())}` }).group).toBe("orders");
    expect(loadConfig(undefined, { DATASYNC_CONFIG: yamlText }).replicas).toHaveLength(1);
  });

  it("prefers the file over DATASYNC_CONFIG", () => {
    const f = join(dir, "file-wins.json");
    writeFileSync(f, JSON.stringify({ ...base(), group: "from-file" }));
    expect(loadConfig(f, { DATASYNC_CONFIG: JSON.stringify({ ...base(), group: "from-env" }) }).group).toBe("from-file");
  });

  it("validates what it loads: an unknown key in a YAML file is refused with its path", () => {
    const f = join(dir, "typo.yaml");
    writeFileSync(f, yamlText.replace("  host: 10.0.0.5", "  hots: 10.0.0.5"));
    expect(() => loadConfig(f, {})).toThrow(/source\.hots: unknown key "hots" in source/);
    expect(() => loadConfig(f, {})).toThrow(/source\.host: required key is missing/);
  });

  it("names a missing file and says how to fix it", () => {
    const f = join(dir, "nope.yaml");
    expect(() => loadConfig(f, {})).toThrow(ConfigError);
    expect(() => loadConfig(f, {})).toThrow(new RegExp(`cannot read the config file ${f.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: ENOENT.*--config`));
  });

  it("without a file and without DATASYNC_CONFIG says what to pass", () => {
    expect(() => loadConfig(undefined, {})).toThrow(/no configuration: pass --config FILE or set DATASYNC_CONFIG/);
    expect(() => loadConfig(undefined, { DATASYNC_CONFIG: "" })).toThrow(/no configuration/);
  });

  it("refuses text that is neither JSON nor YAML, naming its origin", () => {
    expect(() => loadConfig(undefined, { DATASYNC_CONFIG: '{"group": "orders",' })).toThrow(/^invalid configuration:\n {2}- DATASYNC_CONFIG is neither valid JSON nor YAML/);
    const f = join(dir, "bad.yaml");
    writeFileSync(f, "group: [unclosed\n  source: {");
    expect(() => loadConfig(f, {})).toThrow(/bad\.yaml is neither valid JSON nor YAML/);
  });

  it("refuses YAML with a duplicate key rather than silently taking one", () => {
    expect(() => loadConfig(undefined, { DATASYNC_CONFIG: "group: a\ngroup: b\n" })).toThrow(ConfigError);
  });

  it.each([["a scalar", "just-a-string"], ["a list", "- a\n- b\n"], ["empty YAML", "# nothing\n"], ["JSON null", "null"]])("refuses %s at the top level", (_what, text) => {
    expect(() => loadConfig(undefined, { DATASYNC_CONFIG: text })).toThrow(/must be an object with group, source, replicas and databases/);
  });
});

describe("resolvePassword", () => {
  it("returns the inline password", () => {
    const c = validateConfig(base());
    expect(resolvePassword(c.source, "source", {})).toBe("s3cret-source");
  });

  it("reads passwordEnv from the given environment", () => {
    const c = validateConfig(base());
    expect(resolvePassword(c.replicas[1], "replicas[1]", { NORTH_PW: "from-env" })).toBe("from-env");
    expect(resolvePassword(c.replicas[1], "replicas[1]", { NORTH_PW: "" })).toBe("");
  });

  it("names the unset variable and the key path", () => {
    const c = validateConfig(base());
    expect(() => resolvePassword(c.replicas[1], "replicas[1]", {})).toThrow(ConfigError);
    expect(() => resolvePassword(c.replicas[1], "replicas[1]", {})).toThrow(/replicas\[1\]\.passwordEnv: the environment variable NORTH_PW is not set/);
  });

  it("reads passwordFile, dropping exactly one trailing newline (LF or CRLF)", () => {
    const f1 = join(dir, "pw1");
    const f2 = join(dir, "pw2");
    const f3 = join(dir, "pw3");
    writeFileSync(f1, "p@ss word\n");
    writeFileSync(f2, "p@ss\r\n");
    writeFileSync(f3, " keeps spaces \n\n");
    const ep = (file: string) => validateConfig({ ...base(), source: { host: "h", user: "u", passwordFile: file } }).source;
    expect(resolvePassword(ep(f1), "source", {})).toBe("p@ss word");
    expect(resolvePassword(ep(f2), "source", {})).toBe("p@ss");
    expect(resolvePassword(ep(f3), "source", {})).toBe(" keeps spaces \n");
  });

  it("names an unreadable passwordFile", () => {
    const src = validateConfig({ ...base(), source: { host: "h", user: "u", passwordFile: join(dir, "missing-pw") } }).source;
    expect(() => resolvePassword(src, "source", {})).toThrow(/source\.passwordFile: cannot read .*missing-pw \(ENOENT\)/);
  });

  it("is empty when no password is configured", () => {
    const c = validateConfig({ ...base(), source: { host: "h", user: "u" } });
    expect(resolvePassword(c.source, "source", { MYSQL_PWD: "x" })).toBe("");
  });
});

describe("tlsModeOf", () => {
  const ep = (host: string, tls?: object) => validateConfig({ ...base(), source: { host, user: "u", ...(tls ? { tls } : {}) } }).source;
  it.each(["127.0.0.1", "localhost", "LOCALHOST", "::1", "[::1]"])("disabled by default on loopback %s", (h) => {
    expect(tlsModeOf(ep(h))).toBe("disabled");
  });
  // the rest of 127.0.0.0/8 can be a tunnel or proxy to a remote server: only the three names above are exempt
  it.each(["10.0.0.5", "db.example.com", "mydb.mysql.database.azure.com", "128.0.0.1", "localhost.example.com", "::2", "127.0.0.2", "127.1.2.3", "127.0.0.53"])("verify-identity by default on %s", (h) => {
    expect(tlsModeOf(ep(h))).toBe("verify-identity");
  });
  it("an explicit mode wins in both directions", () => {
    expect(tlsModeOf(ep("127.0.0.1", { mode: "required" }))).toBe("required");
    expect(tlsModeOf(ep("db.example.com", { mode: "disabled" }))).toBe("disabled");
    expect(tlsModeOf(ep("db.example.com", { ca: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n" }))).toBe("verify-identity");
  });
});

describe("connectionOptions: TLS modes as mysql2 options", () => {
  const ep = (mode: string) => validateConfig({ ...base(), source: { host: "db.example.com", user: "u", password: "p", tls: { mode } } }).source;
  it("verify-identity asks mysql2 to check the name (it does not by default), verify-ca only the chain", () => {
    expect(connectionOptions(ep("verify-identity"), "source").ssl).toMatchObject({ rejectUnauthorized: true, verifyIdentity: true });
    expect(connectionOptions(ep("verify-ca"), "source").ssl).toMatchObject({ rejectUnauthorized: true, verifyIdentity: false });
    expect(connectionOptions(ep("required"), "source").ssl).toMatchObject({ rejectUnauthorized: false, verifyIdentity: false });
    expect(connectionOptions(ep("disabled"), "source").ssl).toBeUndefined();
  });
});

describe("baseServerId", () => {
  it("uses the configured serverId", () => {
    expect(baseServerId(validateConfig({ ...base(), source: { ...base().source, serverId: 4001 } }))).toBe(4001);
  });
  it("derives a stable id in range from the group, different per group", () => {
    const a1 = baseServerId(validateConfig(base()));
    const a2 = baseServerId(validateConfig(base()));
    const b = baseServerId(validateConfig({ ...base(), group: "billing" }));
    expect(a1).toBe(a2);
    expect(a1).not.toBe(b);
    for (const id of [a1, b]) {
      expect(Number.isInteger(id)).toBe(true);
      expect(id).toBeGreaterThanOrEqual(100_000);
      expect(id).toBeLessThan(2 ** 32);
    }
  });
});

describe("redactConfig", () => {
  it("never contains a password, and keeps everything else", () => {
    const c = validateConfig({
      ...base(),
      replicas: [
        { name: "westeurope", host: "10.0.1.5", user: "datasync", password: "s3cret-west" },
        { name: "northeurope", host: "10.0.2.5", user: "datasync", passwordEnv: "NORTH_PW" },
        { name: "eastus", host: "10.0.3.5", user: "datasync", passwordFile: "/run/secrets/east" },
      ],
    });
    const text = JSON.stringify(redactConfig(c));
    expect(text).not.toContain("s3cret-source");
    expect(text).not.toContain("s3cret-west");
    const r = redactConfig(c) as any;
    expect(r.source.password).toBe("***");
    expect(r.replicas[0].password).toBe("***");
    expect(r.replicas[1].password).toBeUndefined();
    expect(r.replicas[1].passwordEnv).toBe("NORTH_PW");
    expect(r.replicas[2].passwordFile).toBe("/run/secrets/east");
    expect(r.source.host).toBe("10.0.0.5");
    expect(r.group).toBe("orders");
    expect(r.databases).toEqual(["shop"]);
  });

  it("does not change the config it redacts", () => {
    const c = validateConfig(base());
    redactConfig(c);
    expect(c.source.password).toBe("s3cret-source");
  });

  it("an empty password is still masked (its presence is not a secret, its value is)", () => {
    const c = validateConfig({ ...base(), source: { host: "h", user: "u", password: "" } });
    expect((redactConfig(c) as any).source.password).toBe("***");
  });
});
