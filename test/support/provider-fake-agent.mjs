// A stand-in for `datasync agent` where the real agent is not needed (LocalAgent lifecycle tests): reads
// DATASYNC_CONFIG, serves /healthz and /readyz on http.listen, logs JSON lines, stops cleanly on SIGTERM.
import { createServer } from "node:http";

const cfg = JSON.parse(process.env.DATASYNC_CONFIG ?? "{}");
const listen = cfg.http?.listen ?? "127.0.0.1:9464";
const i = listen.lastIndexOf(":");
const log = (msg, extra = {}) => process.stdout.write(JSON.stringify({ msg, group: cfg.group, pid: process.pid, ...extra }) + "\n");
const server = createServer((req, res) => {
  res.writeHead(req.url === "/healthz" || req.url === "/readyz" ? 200 : 404, { "content-type": "application/json" });
  res.end(JSON.stringify({ ok: true, group: cfg.group }));
});
server.listen(Number(listen.slice(i + 1)), listen.slice(0, i), () => log("listening", { listen }));
process.on("SIGTERM", () => {
  server.close(() => {
    log("stopped cleanly");
    process.exit(0);
  });
});
