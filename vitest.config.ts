import { tmpdir } from "node:os";
import { join } from "node:path";
import { defineConfig } from "vitest/config";

// Three projects: `unit` runs once (pure units, mocks, the plan CLI: no server); `mariadb` and `mysql` run every
// test that starts real servers, once per flavor (TestServer reads DATASYNC_TEST_FLAVOR, set here per project).
// One fork pool for all of them, a few files at a time (2 cores): `npx vitest run --project mysql` runs one flavor.
const perFlavor = ["test/integration/**/*.test.ts", "test/chaos/**/*.test.ts"];
// The provider's engine path over gRPC against real servers, per flavor like the integration tests.
const perFlavorE2e = ["test/e2e/engine.test.ts"];
// What only exists on MySQL (GTID sets, caching_sha2_password, invisible primary keys …).
const mysqlOnly = ["test/integration/mysql-*.test.ts"];
// The image's entrypoint and `npm start`'s sandbox: the product's embedded default (MariaDB), flavor-agnostic code.
const once = ["test/e2e/docker.test.ts", "test/e2e/sandbox.test.ts"];

export default defineConfig({
  test: {
    // agents started by tests skip the start-up warm-up (agent/source/warmup.ts: 0.3-0.4 s of CPU per agent,
    // a performance measure): test/integration/agent-writer.test.ts runs it as shipped and checks it
    // every file runs in its own process: they share initialized server datadirs (dev/servers.ts, template()) instead
    // of initializing one each (MySQL 5-8 s, MariaDB 3-5 s per file)
    env: { DATASYNC_WARMUP_TXNS: "0", DATASYNC_SERVER_TEMPLATES: join(tmpdir(), "datasync-servers", "templates") },
    // a scratch directory for the run's config files and Pulumi projects, removed at its end (test/support/global-tmp.ts)
    globalSetup: ["test/support/global-tmp.ts"],
    pool: "forks",
    maxWorkers: 2,
    testTimeout: 120_000,
    hookTimeout: 120_000,
    reporters: ["default"],
    projects: [
      {
        extends: true,
        test: { name: "unit", include: ["test/unit/**/*.test.ts", "test/e2e/plan.test.ts"] },
      },
      {
        extends: true,
        test: { name: "mariadb", include: [...perFlavor, ...perFlavorE2e, ...once], exclude: mysqlOnly, env: { DATASYNC_TEST_FLAVOR: "mariadb" } },
      },
      {
        extends: true,
        test: { name: "mysql", include: [...perFlavor, ...perFlavorE2e], env: { DATASYNC_TEST_FLAVOR: "mysql" } },
      },
    ],
  },
});
