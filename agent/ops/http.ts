// Http owns the agent's HTTP endpoints: /healthz (the process works), /readyz (every replica connected,
// past its snapshot, within readyLagSeconds), /metrics (Prometheus text).
import { createServer } from "node:http";
import type { Registry } from "prom-client";

/** What the endpoints read: the agent's status and metrics (main.ts's Agent), never the agent itself. */
export interface HttpSubject {
  status(): { group: string; ready: boolean; replicas: { name: string; state: string; writer?: { role: string } | null }[] };
  readonly cfg: { readonly readyLagSeconds: number };
  readonly metrics: { readonly registry: Registry };
}

export interface HttpServer {
  address: string;
  close(): Promise<void>;
}

function split(listen: string): { host: string; port: number } {
  const i = listen.lastIndexOf(":");
  return { host: listen.slice(0, i).replace(/^\[|\]$/g, ""), port: Number(listen.slice(i + 1)) };
}

export function startHttp(listen: string, agent: HttpSubject): Promise<HttpServer> {
  const server = createServer(async (req, res) => {
    const url = (req.url ?? "/").split("?")[0];
    try {
      if (url === "/healthz") {
        const st = agent.status();
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ status: "ok", group: st.group, replicas: st.replicas.map((r) => ({ name: r.name, state: r.state, writer: r.writer?.role ?? null })) }));
      } else if (url === "/readyz") {
        const st = agent.status();
        res.writeHead(st.ready ? 200 : 503, { "content-type": "application/json" });
        res.end(JSON.stringify({ ready: st.ready, group: st.group, readyLagSeconds: agent.cfg.readyLagSeconds, replicas: st.replicas }));
      } else if (url === "/metrics") {
        agent.status(); // refresh lag gauges
        res.writeHead(200, { "content-type": agent.metrics.registry.contentType });
        res.end(await agent.metrics.registry.metrics());
      } else {
        res.writeHead(404, { "content-type": "text/plain" });
        res.end("not found: try /healthz, /readyz or /metrics\n");
      }
    } catch (err: any) {
      res.writeHead(500, { "content-type": "text/plain" });
      res.end(String(err?.message ?? err));
    }
  });
  const { host, port } = split(listen);
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      const a = server.address();
      const address = typeof a === "object" && a ? `${a.family === "IPv6" ? `[${a.address}]` : a.address}:${a.port}` : listen;
      resolve({
        address,
        close: () => new Promise((r) => {
          server.closeAllConnections?.();
          server.close(() => r());
        }),
      });
    });
  });
}
