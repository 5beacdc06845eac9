// Comparing a base plan with the head: replicas added, removed, changed (which fields), rules newly
// failing or fixed, and the warnings a reviewer needs.
import { describe, expect, it } from "vitest";
import { diffPlans, reviewWarnings } from "../../provider/plan-diff.js";
import { recordOf } from "../../provider/plan-model.js";
import { local, planOf, PRIMARY } from "../support/plan-fixtures.js";

describe("diffPlans", () => {
  it("lists added, removed and changed replicas with the changed fields", () => {
    const base = planOf([local("a", 3307), local("b", 3308), local("gone", 3309)]);
    const head = planOf([local("a", 3307), local("b", 3318), local("new", 3310)]);
    const [g] = diffPlans(base, head, "main").groups;
    expect(g.status).toBe("changed");
    expect(g.added.map((r) => r.name)).toEqual(["new"]);
    expect(g.removed.map((r) => r.name)).toEqual(["gone"]);
    expect(g.changed).toEqual([{ name: "b", fields: [{ field: "port", from: "3308", to: "3318" }] }]);
    expect(g.newlyFailing).toEqual([]);
  });

  it("shows a version change on the primary and every replica, and the rules it breaks or fixes", () => {
    const base = planOf([local("a", 3307), local("b", 3308, "10.6")]);
    const head = planOf([local("a", 3307, "11.4"), local("b", 3308, "11.4")], { ...PRIMARY, version: "11.4" });
    const [g] = diffPlans(base, head, "HEAD~1").groups;
    expect(g.changed.map((c) => [c.name, c.fields.map((f) => `${f.field} ${f.from} → ${f.to}`)])).toEqual([
      ["primary", ["version 10.11 → 11.4"]],
      ["a", ["version 10.11 → 11.4"]],
      ["b", ["version 10.6 → 11.4"]],
    ]);
    expect(g.fixed).toEqual([expect.stringMatching(/^replicas\[1\]\.version: .*10\.6.*differs/)]);
    const broken = diffPlans(head, planOf([local("a", 3307, "11.4"), local("b", 3308, "10.11")], { ...PRIMARY, version: "11.4" }), "x").groups[0];
    expect(broken.newlyFailing).toEqual([expect.stringMatching(/^replicas\[1\]\.version/)]);
  });

  it("treats a stack without a base as all new, and reports unchanged groups", () => {
    const head = planOf([local("a", 3307)]);
    expect(diffPlans(undefined, head, "main").groups[0]).toMatchObject({ status: "added", added: [{ name: "a" }] });
    expect(diffPlans(head, head, "main").groups[0].status).toBe("unchanged");
  });
});

describe("reviewWarnings", () => {
  it("a new replica means a full snapshot; a version change means replacement", () => {
    const base = planOf([local("a", 3307)]);
    const head = planOf([local("a", 3307, "11.4"), local("b", 3308, "11.4")], { ...PRIMARY, version: "11.4" });
    const w = reviewWarnings(head, diffPlans(base, head, "main"));
    expect(w.find((x) => x.startsWith("New replica `b`"))).toMatch(/full online snapshot/);
    expect(w.find((x) => x.startsWith("Version change"))).toMatch(/primary 10\.11 → 11\.4; a 10\.11 → 11\.4\): means replacement/);
  });

  it("a target change replaces every server; Azure removals delete the server", () => {
    const azure = (names: string[]) =>
      planOf(
        names.map((n) => ({ name: n, host: "04da6b54-80e4-46f7-96ec-b56ff0331ba9", port: 3306, user: "u", version: "8.0" })),
        { host: "db", user: "u", version: "8.0" },
        names.map((n) => recordOf("azure-native:dbformysql:Server", `g-${n}`, { location: n })),
        "azure",
      );
    const fromLocal = planOf([local("westeurope", 3307, "8.0")], { host: "db", user: "u", version: "8.0" });
    const w = reviewWarnings(azure(["westeurope"]), diffPlans(fromLocal, azure(["westeurope"]), "main"));
    expect(w.some((x) => /^Target local → azure .*means replacement/.test(x))).toBe(true);
    const removed = reviewWarnings(azure(["westeurope"]), diffPlans(azure(["westeurope", "eastus"]), azure(["westeurope"]), "main"));
    expect(removed.find((x) => x.startsWith("Removed replica `eastus`"))).toMatch(/flexible server is deleted with its data/);
  });

  it("without a base, states the standing costs once per group", () => {
    const w = reviewWarnings(planOf([local("a", 3307)]));
    expect(w).toEqual([expect.stringMatching(/full online snapshot of `shop`.*version or target change replaces/)]);
  });
});
