#!/usr/bin/env node
// The one idempotent setup step used by `npm start`, `npm test` and `.ci/run`:
//   1. a MariaDB/MySQL server binary (installs Debian's `mariadb-server` when none exists),
//   2. a private MySQL (Debian unstable's mysql-server-core, run with its own loader and libraries from
//      `.mysql/` in the project; nothing is installed system-wide; see DESIGN.md "Real MySQL runs here too"),
//   3. node_modules matching package-lock.json (`npm ci` when missing or stale).
// `node scripts/setup.mjs [server|mysql|deps]` runs one step; no argument runs all three. `bench` installs
// sysbench for `npm run bench` (its sysbench scenario), which runs the default steps first.
// Each step does nothing when its work is already done. Uses only Node built-ins (runs before npm ci).
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, statSync, mkdirSync, readdirSync, readFileSync, writeFileSync, rmSync, renameSync, chmodSync } from "node:fs";
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

/** Debian packages through apt-get (as root, or with sudo without a password); false when that is not possible here */
function aptInstall(packages) {
  const isRoot = typeof process.getuid === "function" && process.getuid() === 0;
  const hasApt = existsSync("/usr/bin/apt-get");
  const hasSudo = spawnSync("sh", ["-c", "command -v sudo"], { stdio: "ignore" }).status === 0;
  if (!hasApt || (!isRoot && !hasSudo)) return false;
  const prefix = isRoot ? [] : ["sudo", "-n"];
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const run = (args) => {
    const [cmd, ...rest] = [...prefix, ...args];
    const r = spawnSync(cmd, rest, { stdio: ["ignore", "inherit", "inherit"], env });
    return r.status === 0;
  };
  return run(["apt-get", "update", "-q"]) && run(["apt-get", "install", "-y", "-q", "--no-install-recommends", ...packages]);
}

function ensureServer() {
  if (findServerBinary()) return;
  say("no MariaDB server binary found: installing Debian's mariadb-server (apt-get)…");
  // The package's own service is not needed: the tools start private servers.
  if (!aptInstall(["mariadb-server", "mariadb-client"])) {
    say("no MariaDB/MySQL server binary (mariadbd or mysqld) was found, and apt-get could not install one here.");
    say("Install one, e.g. on Debian/Ubuntu: sudo apt-get install -y mariadb-server  (macOS: brew install mariadb)");
    process.exit(1);
  }
  if (!findServerBinary()) {
    say("mariadb-server was installed but no mariadbd binary was found on PATH or in /usr/sbin.");
    process.exit(1);
  }
}

// ---- MySQL from Debian unstable, unpacked into a private prefix ----
const mysqlDir = join(root, ".mysql");
const mysqlPrefix = join(mysqlDir, "prefix");
const mysqlBin = join(mysqlDir, "bin");

/** the Debian mirror apt already uses (never another host) */
function debianMirror() {
  const texts = [];
  for (const f of ["/etc/apt/sources.list"]) if (existsSync(f)) texts.push(readFileSync(f, "utf8"));
  const d = "/etc/apt/sources.list.d";
  if (existsSync(d)) for (const f of readdirSync(d)) if (/\.(list|sources)$/.test(f)) texts.push(readFileSync(join(d, f), "utf8"));
  for (const t of texts) {
    for (const m of t.matchAll(/(https?:\/\/[^\s\]]+?\/debian)\/?(?=\s|$)/gm)) {
      if (!/security/.test(m[1])) return m[1];
    }
  }
  return "http://deb.debian.org/debian";
}

function mysqlWorks() {
  const w = join(mysqlBin, "mysqld");
  if (!existsSync(w)) return false;
  const r = spawnSync(w, ["--version"], { encoding: "utf8" });
  return r.status === 0 && /mysqld\s+Ver\s+\d/.test(r.stdout);
}

function ensureMysql() {
  if (mysqlWorks()) return;
  if (!existsSync("/usr/bin/apt-get") || !existsSync("/usr/bin/dpkg-deb")) {
    say("MySQL for the tests comes from Debian's packages (apt-get, dpkg-deb), which this machine lacks.");
    say("Set DATASYNC_MYSQLD to a mysqld 8.0+ binary (and DATASYNC_MYSQL_BIN to its client folder) instead.");
    process.exit(1);
  }
  say(`fetching MySQL (Debian unstable's mysql-server-core) into ${mysqlDir} (≈55 MB, once)…`);
  const work = join(mysqlDir, "work");
  rmSync(work, { recursive: true, force: true });
  const lists = join(work, "lists");
  const cache = join(work, "cache");
  const debs = join(work, "debs");
  for (const d of [join(lists, "partial"), join(cache, "archives", "partial"), debs]) mkdirSync(d, { recursive: true });
  const sources = join(work, "sources.list");
  writeFileSync(sources, `deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${debianMirror()} sid main\n`);
  const aptOpts = [
    "-o", `Dir::Etc::sourcelist=${sources}`, "-o", "Dir::Etc::sourceparts=-", "-o", `Dir::State::Lists=${lists}`,
    "-o", `Dir::Cache=${cache}`, "-o", "Dir::State::status=/dev/null", "-o", "APT::Get::List-Cleanup=0",
    "-o", "APT::Sandbox::User=root",
  ];
  const run = (cmd, args, opts = {}) => {
    const r = spawnSync(cmd, args, { encoding: "utf8", maxBuffer: 64 << 20, ...opts });
    if (r.status !== 0) {
      say(`${cmd} ${args.filter((a) => !a.startsWith("Dir::")).slice(-3).join(" ")} failed (exit ${r.status}): ${(r.stderr || r.stdout || "").slice(-2000)}`);
      process.exit(1);
    }
    return r.stdout;
  };
  run("apt-get", [...aptOpts, "-q", "update"]);
  // unstable moves: resolve the closure from the packages' own Depends rather than a fixed list
  const deps = run("apt-cache", [...aptOpts, "depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
    "--no-breaks", "--no-replaces", "--no-enhances", "mysql-server-core", "mysql-client-core"]);
  const pkgs = [...new Set(deps.split("\n").filter((l) => /^[a-z0-9]/.test(l)).map((l) => l.trim()))]
    // perl is only for helper scripts (mysqldumpslow, mysqld_multi), not the server or the client
    .filter((p) => !/^(perl|perl-base|perl-modules-.*|libperl.*|libgdbm.*|libdb5.*|debconf.*)$/.test(p));
  run("apt-get", [...aptOpts, "-q", "download", ...pkgs], { cwd: debs });
  const prefix = join(work, "prefix");
  mkdirSync(prefix, { recursive: true });
  for (const f of readdirSync(debs)) if (f.endsWith(".deb")) run("dpkg-deb", ["-x", join(debs, f), prefix]);
  const lib = join(prefix, "usr", "lib", "x86_64-linux-gnu");
  const loader = join(lib, "ld-linux-x86-64.so.2");
  const libPath = `${lib}:${join(prefix, "lib", "x86_64-linux-gnu")}`;
  const missing = run(loader, ["--library-path", libPath, "--list", join(prefix, "usr", "sbin", "mysqld")])
    .split("\n").filter((l) => /not found/.test(l));
  if (missing.length) {
    say(`the unpacked mysqld lacks libraries: ${missing.join("; ")}`);
    process.exit(1);
  }
  // move into place, then write wrappers with the final paths
  rmSync(mysqlPrefix, { recursive: true, force: true });
  renameSync(prefix, mysqlPrefix);
  rmSync(work, { recursive: true, force: true });
  const flib = join(mysqlPrefix, "usr", "lib", "x86_64-linux-gnu");
  const fpath = `${flib}:${join(mysqlPrefix, "lib", "x86_64-linux-gnu")}`;
  mkdirSync(mysqlBin, { recursive: true });
  const tools = { mysqld: "usr/sbin/mysqld", mysql: "usr/bin/mysql", mysqldump: "usr/bin/mysqldump", mysqlbinlog: "usr/bin/mysqlbinlog", mysqladmin: "usr/bin/mysqladmin" };
  for (const [name, rel] of Object.entries(tools)) {
    const w = join(mysqlBin, name);
    // exec: the wrapper's pid becomes the program's, so signals reach it
    writeFileSync(w, `#!/bin/sh\nexec "${join(flib, "ld-linux-x86-64.so.2")}" --library-path "${fpath}" "${join(mysqlPrefix, rel)}" "$@"\n`);
    chmodSync(w, 0o755);
  }
  if (!mysqlWorks()) {
    say("MySQL was unpacked but `mysqld --version` does not run; see .mysql/bin/mysqld");
    process.exit(1);
  }
  say(`MySQL ready: ${spawnSync(join(mysqlBin, "mysqld"), ["--version"], { encoding: "utf8" }).stdout.trim()}`);
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

/** `npm run bench`'s sysbench scenario: Debian's sysbench (only with the `bench` argument; npm test never needs it) */
function ensureSysbench() {
  if (existsSync("/usr/bin/sysbench") || spawnSync("sh", ["-c", "command -v sysbench"], { stdio: "ignore" }).status === 0) return;
  say("no sysbench found (the bench's sysbench scenario): installing Debian's sysbench (apt-get)…");
  if (!aptInstall(["sysbench"])) {
    say("apt-get could not install sysbench here; the bench's other scenarios run without it. Install it by hand: sudo apt-get install -y sysbench");
  }
}

const only = process.argv[2];
if (only === "bench") {
  ensureSysbench();
  process.exit(0);
}
if (!only || only === "server") ensureServer();
if (!only || only === "mysql") {
  if (process.env.DATASYNC_MYSQLD) {
    if (!existsSync(process.env.DATASYNC_MYSQLD)) { say(`DATASYNC_MYSQLD=${process.env.DATASYNC_MYSQLD} does not exist`); process.exit(1); }
  } else ensureMysql();
}
if (!only || only === "deps") ensureNodeModules();
