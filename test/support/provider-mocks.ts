// Runs the root program (compiled) under Pulumi mocks with a committed stack file's config, recording
// every registered resource. Secrets arrive in mock inputs as envelopes; `reveal` unwraps them.
import { readFileSync } from "node:fs";
import YAML from "yaml";
import * as pulumi from "@pulumi/pulumi";
import { dist, type ProgramModule } from "./provider-dist.js";

export const SECRET_SIG = "4dabf18193072939515e22adb298388d";

export interface Registered {
  type: string;
  name: string;
  inputs: any;
  /** the resource options the engine would get */
  options?: { protect: boolean; deleteBeforeReplace: boolean; replaceOnChanges: string[]; dependsOn: string[] };
}

export function isSecretEnvelope(v: unknown): boolean {
  return !!v && typeof v === "object" && (v as any)[SECRET_SIG] === "1b47061264138c4ac30d75fd1eb44270";
}

/** paths where `needle` appears outside any secret envelope (a plaintext leak) */
export function plaintextLeaks(v: any, needle: string, path = ""): string[] {
  if (isSecretEnvelope(v)) return [];
  if (typeof v === "string") return v.includes(needle) ? [path || "(root)"] : [];
  if (Array.isArray(v)) return v.flatMap((x, i) => plaintextLeaks(x, needle, `${path}[${i}]`));
  if (v && typeof v === "object") return Object.entries(v).flatMap(([k, x]) => plaintextLeaks(x, needle, path ? `${path}.${k}` : k));
  return [];
}

export function reveal(v: any): any {
  if (isSecretEnvelope(v)) return reveal(v.value);
  if (Array.isArray(v)) return v.map(reveal);
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, reveal(x)]));
  return v;
}

/** config of a stack file as the runtime sees it (objects as JSON text), plus extra keys */
export function stackConfig(file: string, extra: Record<string, unknown> = {}): Record<string, string> {
  const doc = YAML.parse(readFileSync(file, "utf8")).config as Record<string, unknown>;
  const all = { ...doc, ...extra };
  return Object.fromEntries(Object.entries(all).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]));
}

/** what the mock cloud answers for the resources Azure computes (stand-ins, documentation ranges) */
export const MOCK_EGRESS_IP = "198.51.100.20";
export const MOCK_WORKSPACE_CUSTOMER_ID = "6f1c2e8a-0000-4000-8000-000000000001";
export const MOCK_WORKSPACE_KEY = "workspace-shared-key==";

export async function runUnderMocks(stack: string, config: Record<string, string>, secretKeys: string[] = []) {
  const registered: Registered[] = [];
  const options = new Map<string, Registered["options"]>();
  pulumi.runtime.setMocks(
    {
      newResource: (args) => {
        registered.push({ type: args.type, name: args.name, inputs: args.inputs, options: options.get(`${args.type}::${args.name}`) });
        const state: any = { ...args.inputs };
        if (args.type === "azure-native:network:PublicIPAddress") state.ipAddress = MOCK_EGRESS_IP;
        if (args.type === "azure-native:operationalinsights:Workspace") state.customerId = MOCK_WORKSPACE_CUSTOMER_ID;
        if (args.type.startsWith("azure-native:")) state.name = args.inputs.serverName ?? args.name;
        if (args.type === "azure-native:dbformysql:Server") state.fullyQualifiedDomainName = `${args.inputs.serverName ?? args.name}.mysql.database.azure.com`;
        if (args.type === "random:index/randomPassword:RandomPassword") state.result = "generated-Pa55word";
        if (args.type === "azure-native:resources:ResourceGroup") state.name = args.name;
        if (args.type === "pulumi-nodejs:dynamic/datasync:LocalAgent") Object.assign(state, { pid: 4242, healthUrl: "http://127.0.0.1:9464/healthz" });
        return { id: `${args.name}-id`, state };
      },
      call: (args) => (args.token === "azure-native:operationalinsights:getSharedKeys" ? { primarySharedKey: MOCK_WORKSPACE_KEY } : {}),
    },
    "datasync",
    stack,
    true,
  );
  // the mock monitor sees the resource options (protect, replaceOnChanges, …) that newResource does not get
  const monitor: any = pulumi.runtime.getMonitor();
  const register = monitor.registerResource.bind(monitor);
  monitor.registerResource = (req: any, cb: any) => {
    options.set(`${req.getType()}::${req.getName()}`, {
      protect: req.getProtect(),
      deleteBeforeReplace: req.getDeletebeforereplace(),
      replaceOnChanges: req.getReplaceonchangesList(),
      dependsOn: req.getDependenciesList(),
    });
    return register(req, cb);
  };
  pulumi.runtime.setAllConfig(config, secretKeys);
  const program = dist<ProgramModule>("program");
  const outputs = await program.runProgram();
  // wait until every output (and so every registration it depends on) resolved
  const values: Record<string, unknown> = {};
  const secret: Record<string, boolean> = {};
  for (const [k, v] of Object.entries(outputs)) {
    const o = pulumi.output(v as pulumi.Input<unknown>) as pulumi.Output<unknown>;
    values[k] = await new Promise((r) => o.apply(r));
    secret[k] = await pulumi.isSecret(o);
  }
  return { registered, outputs: values, secret, program };
}
