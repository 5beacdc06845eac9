// Code size: the largest classes (lines, fields, methods) and functions (lines) under a folder, read with the
// TypeScript parser. `node bench/sizes.mjs agent` (issue 16 reports ReplicaSync before and after its carving).
import ts from "typescript";
import fs from "node:fs";
import path from "node:path";
const root = process.argv[2] ?? "agent";
const files = [];
const walk = (d) => { for (const e of fs.readdirSync(d, { withFileTypes: true })) { const p = path.join(d, e.name); if (e.isDirectory()) walk(p); else if (p.endsWith(".ts")) files.push(p); } };
walk(root);
const classes = [], fns = [];
for (const f of files) {
  const src = ts.createSourceFile(f, fs.readFileSync(f, "utf8"), ts.ScriptTarget.Latest, true);
  const lines = (n) => src.getLineAndCharacterOfPosition(n.getEnd()).line - src.getLineAndCharacterOfPosition(n.getStart()).line + 1;
  const visit = (n) => {
    if (ts.isClassDeclaration(n)) {
      const fields = n.members.filter((m) => ts.isPropertyDeclaration(m)).length;
      const methods = n.members.filter((m) => ts.isMethodDeclaration(m) || ts.isGetAccessor(m) || ts.isSetAccessor(m) || ts.isConstructorDeclaration(m)).length;
      classes.push({ name: `${f}:${n.name?.text}`, lines: lines(n), fields, methods });
    }
    if (ts.isFunctionDeclaration(n) || ts.isMethodDeclaration(n) || ts.isConstructorDeclaration(n)) {
      const nm = n.name ? n.name.getText(src) : "constructor";
      fns.push({ name: `${f}:${nm}`, lines: lines(n) });
    }
    ts.forEachChild(n, visit);
  };
  visit(src);
}
classes.sort((a, b) => b.lines - a.lines); fns.sort((a, b) => b.lines - a.lines);
console.log("largest classes:"); for (const c of classes.slice(0, 5)) console.log(`  ${c.name}  ${c.lines} lines, ${c.fields} fields, ${c.methods} methods`);
console.log("largest functions:"); for (const c of fns.slice(0, 5)) console.log(`  ${c.name}  ${c.lines} lines`);
