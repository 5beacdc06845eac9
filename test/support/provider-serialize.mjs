// Serializes the dynamic providers from the COMPILED code (dist/) exactly as pulumi.dynamic.Resource does,
// in a plain node process (vitest's module transform breaks closure serialization). Prints JSON
// { SyncGroup, ReplicaServer, LocalAgent } of `__provider` strings. Run `npm run build` first.
import * as pulumi from "@pulumi/pulumi";
import { syncGroupProvider, replicaServerProvider, localAgentProvider } from "../../dist/provider/index.js";

const out = {};
for (const [k, p] of Object.entries({ SyncGroup: syncGroupProvider, ReplicaServer: replicaServerProvider, LocalAgent: localAgentProvider })) {
  const sf = await pulumi.runtime.serializeFunction(() => p, { allowSecrets: true });
  if (sf.containsSecrets) throw new Error(`${k}: the serialized provider captured a secret`);
  out[k] = sf.text;
}
process.stdout.write(JSON.stringify(out));
