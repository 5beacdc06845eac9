// vitest globalSetup: one scratch directory for the whole run (DATASYNC_TEST_TMP, inherited by the test processes),
// where test/support writes its config files and Pulumi projects; removed when the run ends, so runs leave no
// directories behind in the system's temp directory.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export default function setup(): () => void {
  const dir = mkdtempSync(join(tmpdir(), "datasync-test-"));
  process.env.DATASYNC_TEST_TMP = dir;
  return () => rmSync(dir, { recursive: true, force: true });
}
