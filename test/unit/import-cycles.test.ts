// No import cycles in shipped code (issue 16): a cycle makes module order matter (a class read before its module
// ran is undefined), hides which side owns what, and forbids testing one side alone. Static imports only, type
// imports included (they are still a dependency of the design); a dynamic import() is a deliberate late edge
// (program.ts loads program-azure.ts, cli.ts loads each command) and is not followed. No eslint-plugin-import in
// the toolchain, so the graph is read here.
import { describe, it, expect } from "vitest";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const root = join(import.meta.dirname, "..", "..");

function tsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? tsFiles(p) : n.endsWith(".ts") && !n.endsWith(".d.ts") ? [p] : [];
  });
}

/** static `import … from "./x.js"`, `export … from`, and bare `import "./x.js"` of relative modules */
export function staticImports(file: string, text: string): string[] {
  const out: string[] = [];
  const re = /^\s*(?:import|export)\s+(?:[^;"'`]*?\s+from\s+)?["'](\.{1,2}\/[^"']+)["']/gm;
  for (let m; (m = re.exec(text)); ) out.push(resolve(dirname(file), m[1].replace(/\.js$/, ".ts")));
  return out;
}

/** every cycle (as a list of files, repo-relative) among the given files */
export function cycles(graph: Map<string, string[]>): string[][] {
  const found: string[][] = [];
  const state = new Map<string, 1 | 2>();
  const stack: string[] = [];
  const visit = (n: string) => {
    state.set(n, 1);
    stack.push(n);
    for (const m of graph.get(n) ?? []) {
      if (!graph.has(m)) continue;
      if (state.get(m) === 1) found.push([...stack.slice(stack.indexOf(m)), m].map((f) => relative(root, f)));
      else if (!state.has(m)) visit(m);
    }
    stack.pop();
    state.set(n, 2);
  };
  for (const n of [...graph.keys()].sort()) if (!state.has(n)) visit(n);
  return found;
}

describe("import cycles", () => {
  it("finds a cycle when there is one (the check itself works)", () => {
    const a = join(root, "a.ts"), b = join(root, "b.ts"), c = join(root, "c.ts");
    expect(staticImports(a, 'import { x } from "./b.js";\nimport type { Y } from "./c.js";\nconst z = await import("./c.js");')).toEqual([b, c]);
    expect(cycles(new Map([[a, [b]], [b, [c]], [c, [a]]]))).toEqual([["a.ts", "b.ts", "c.ts", "a.ts"]]);
    expect(cycles(new Map([[a, [b]], [b, [c]], [c, []]]))).toEqual([]);
  });

  for (const dir of ["agent", "provider", "dev"]) {
    it(`${dir}/ has none`, () => {
      const graph = new Map(tsFiles(join(root, dir)).map((f) => [f, staticImports(f, readFileSync(f, "utf8"))]));
      expect(cycles(graph)).toEqual([]);
    });
  }
});
