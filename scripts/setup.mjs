#!/usr/bin/env node
// The one idempotent setup step used by `npm start`, `npm test` and `.ci/run`:
//   1. a MariaDB/MySQL server binary (installs Debian's `mariadb-server` when none exists),
//   2. node_modules matching package-lock.json (`npm ci` when missing or stale).
// Each step does nothing when its work is already done. Uses only Node built-ins (runs before npm ci).
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const say = (msg) => process.stderr.write(`[setup] ${msg}\n`);

function findServerBinary() {
  const dirs = (process.env.PATH || "").split(":").concat(["/usr/sbin", "/usr/local/sbin", "/usr/local/mysql/bin"]);
  for (const name of ["mariadbd", "mysqld"]) {
    for (const d of dirs) {
      if (d && existsSync(join(d, name))) return join(d, name);
    }
  }
  return null;
}

function ensureServer() {
  if (findServerBinary()) return;
  const isRoot = typeof process.getuid === "function" && process.getuid() === 0;
  const hasApt = existsSync("/usr/bin/apt-get");
  const hasSudo = spawnSync("sh", ["-c", "command -v sudo"], { stdio: "ignore" }).status === 0;
  if (!hasApt || (!isRoot && !hasSudo)) {
    say("no MariaDB/MySQL server binary (mariadbd or mysqld) was found, and it cannot be installed automatically here.");
    say("Install one, e.g. on Debian/Ubuntu: sudo apt-get install -y mariadb-server  (macOS: brew install mariadb)");
    process.exit(1);
  }
  const prefix = isRoot ? [] : ["sudo", "-n"];
  say("no MariaDB server binary found: installing Debian's mariadb-server (apt-get)…");
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const run = (args) => {
    const [cmd, ...rest] = [...prefix, ...args];
    const r = spawnSync(cmd, rest, { stdio: ["ignore", "inherit", "inherit"], env });
    return r.status === 0;
  };
  // The package's own service is not needed: the tools start private servers. policy-rc.d keeps
  // apt from starting one where an init system exists.
  if (!run(["apt-get", "update", "-q"]) || !run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "mariadb-server", "mariadb-client"])) {
    say("apt-get could not install mariadb-server. Install it by hand: sudo apt-get install -y mariadb-server");
    process.exit(1);
  }
  if (!findServerBinary()) {
    say("mariadb-server was installed but no mariadbd binary was found on PATH or in /usr/sbin.");
    process.exit(1);
  }
}

function nodeModulesStale() {
  const marker = join(root, "node_modules", ".package-lock.json");
  if (!existsSync(marker)) return "node_modules is missing";
  const lock = join(root, "package-lock.json");
  if (existsSync(lock) && statSync(lock).mtimeMs > statSync(marker).mtimeMs + 1000) return "package-lock.json is newer than node_modules";
  const pkg = join(root, "package.json");
  if (statSync(pkg).mtimeMs > statSync(marker).mtimeMs + 1000) return "package.json is newer than node_modules";
  if (!existsSync(join(root, "dist", "agent", "cli.js"))) return "the compiled code (dist/) is missing";
  return null;
}

function ensureNodeModules() {
  const why = nodeModulesStale();
  if (!why) return;
  say(`${why}: running npm ci…`);
  execFileSync("npm", ["ci", "--no-audit", "--no-fund"], { cwd: root, stdio: "inherit" });
}

const only = process.argv[2];
if (!only || only === "server") ensureServer();
if (!only || only === "deps") ensureNodeModules();
