// The Markdown a reviewer reads and the JSON other tools read. The Mermaid blocks are validated with the
// real parser from npm (mermaid.parse under jsdom), not only by matching strings.
import { describe, expect, it } from "vitest";
import { diffPlans } from "../../provider/plan-diff.js";
import { renderJson, renderMarkdown } from "../../provider/plan-render.js";
import { recordOf } from "../../provider/plan-model.js";
import { local, planOf, PRIMARY } from "../support/plan-fixtures.js";
import { mermaidBlocks, parseMermaid } from "../support/plan-mermaid.js";

describe("renderMarkdown", () => {
  it("renders a diagram mermaid accepts, even with awkward names, plus the server table and rule results", async () => {
    const plan = planOf([local('we"st<1>', 3307), local("north|x", 3308)], PRIMARY, [recordOf("pulumi-nodejs:dynamic/datasync:LocalAgent", "g-agent", { entry: "bin/datasync.js" })]);
    const md = renderMarkdown(plan);
    const [diagram] = mermaidBlocks(md);
    await expect(parseMermaid(diagram)).resolves.toMatchObject({ diagramType: "flowchart-v2" });
    expect(diagram).toContain("we#quot;st#lt;1#gt;");
    expect(md).toContain("| replica | north\\|x | 127.0.0.1:3308 | MariaDB 10.11 |");
    expect(md).toContain("Agent: local process, on the machine running pulumi up.");
    expect(md).toMatch(/\| 3,4,6 · .* \| 🔌 live only \|/);
  });

  it("a failing rule is in the headline, the rule table and the failure list", () => {
    const md = renderMarkdown(planOf([local("a", 3307, "10.6")]));
    expect(md).toContain("❌ **1 preview rule failure: `pulumi preview` would fail.**");
    expect(md).toMatch(/- ❌ `replicas\[0\]\.version`: .*differs from the primary's MariaDB 10\.11/);
  });

  it("with a base: highlights added and changed replicas in a valid diagram and lists the changes", async () => {
    const base = planOf([local("a", 3307), local("b", 3308)]);
    const head = planOf([local("a", 3307), local("b", 3318), local("c", 3309)]);
    const md = renderMarkdown(head, diffPlans(base, head, "origin/main", ["The base is evaluated with the current program."]));
    const [diagram] = mermaidBlocks(md);
    expect(diagram).toContain("class replica1 changed");
    expect(diagram).toContain("class replica2 added");
    await parseMermaid(diagram);
    expect(md).toContain("### Changes against `origin/main`");
    expect(md).toContain("> The base is evaluated with the current program.");
    expect(md).toContain("- ➕ replica `c` added (127.0.0.1:3309, MariaDB 10.11)");
    expect(md).toContain("- ✏️ replica `b` changed: port 3308 → 3318");
  });

  it("rejects a broken diagram (the parser is real)", async () => {
    await expect(parseMermaid('flowchart LR\n  a[("x"] -->')).rejects.toThrow(/Parse error/);
  });
});

describe("renderJson", () => {
  it("carries ok, the groups with their Mermaid text, the warnings and the diff", () => {
    const base = planOf([local("a", 3307)]);
    const head = planOf([local("a", 3307), local("b", 3308)]);
    const j = JSON.parse(renderJson(head, diffPlans(base, head, "main")));
    expect(j.ok).toBe(true);
    expect(j.groups[0].mermaid.startsWith("flowchart LR")).toBe(true);
    expect(j.groups[0].replicas.map((r: any) => r.name)).toEqual(["a", "b"]);
    expect(j.diff.groups[0].added.map((r: any) => r.name)).toEqual(["b"]);
    expect(j.warnings.some((w: string) => w.startsWith("New replica `b`"))).toBe(true);
  });
});
