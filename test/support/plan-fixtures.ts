// Recorded resources and plans for the plan's unit tests, shaped like what plan-run records under mocks.
import { buildPlan, recordOf, SYNC_GROUP_TYPE, type Plan, type RecordedResource } from "../../provider/plan-model.js";

export const SECRET_SIG = "4dabf18193072939515e22adb298388d";
export const secret = (value: unknown) => ({ [SECRET_SIG]: "1b47061264138c4ac30d75fd1eb44270", value });
export const meta = { project: "datasync", stack: "dev", program: "p.js", stackFile: "Pulumi.dev.yaml" };
export const PRIMARY = { host: "127.0.0.1", port: 3306, user: "u", version: "10.11" };

/** a local replica spec on 127.0.0.1 */
export const local = (name: string, port: number, version = "10.11") => ({ name, host: "127.0.0.1", port, user: "u", version });

export function group(replicas: any[], primary: any = PRIMARY, name = "g", databases = ["shop"]): RecordedResource {
  return recordOf(SYNC_GROUP_TYPE, name, { group: name, primary, replicas, databases, __provider: "code", agentConfig: secret("{}") });
}

export function planOf(replicas: any[], primary: any = PRIMARY, more: RecordedResource[] = [], target = "local"): Plan {
  return buildPlan({ ...meta, target }, [group(replicas, primary), ...more]);
}
