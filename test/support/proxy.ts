// A TCP proxy on 127.0.0.1 for fault injection between the agent and one server: added latency, dropped
// connections, and silently stalled (half-open) connections. Every accepted client connection gets its own
// upstream connection; the proxy forwards bytes both ways, in order.
//
// It also sniffs the client's MySQL command packets (plain protocol; TLS is off on loopback), so a
// connection that sent COM_BINLOG_DUMP (MariaDB and MySQL file/position) or COM_BINLOG_DUMP_GTID is known as
// a binlog connection: `stall("binlog")` freezes only those, the way one long-lived flow dies in a broken
// middlebox while new connections work.
import { createServer, connect, type Server, type Socket } from "node:net";

export type ConnKind = "binlog" | "query";
/** which current connections a fault applies to */
export type Target = "all" | ConnKind | ((c: ProxyConnInfo) => boolean);

export interface ProxyConnInfo {
  readonly id: number;
  readonly kind: ConnKind;
  readonly openedAt: number;
  readonly stalled: boolean;
  readonly bytesUp: number;
  readonly bytesDown: number;
}

const COM_BINLOG_DUMP = 0x12;
const COM_BINLOG_DUMP_GTID = 0x1e;

/** incremental parser of client→server packets: finds the command byte of each sequence-0 packet */
class CommandSniffer {
  #header = Buffer.alloc(0);
  #remaining = 0; // payload bytes still to skip in the current packet
  #wantCommand = false;
  onCommand: (cmd: number) => void = () => undefined;

  feed(buf: Buffer): void {
    let i = 0;
    while (i < buf.length) {
      if (this.#remaining > 0) {
        if (this.#wantCommand) {
          this.#wantCommand = false;
          this.onCommand(buf[i]);
        }
        const n = Math.min(this.#remaining, buf.length - i);
        this.#remaining -= n;
        i += n;
        continue;
      }
      const need = 4 - this.#header.length;
      const take = buf.subarray(i, i + need);
      this.#header = Buffer.concat([this.#header, take]);
      i += take.length;
      if (this.#header.length === 4) {
        const len = this.#header.readUIntLE(0, 3);
        const seq = this.#header[3];
        this.#header = Buffer.alloc(0);
        this.#remaining = len;
        this.#wantCommand = seq === 0 && len > 0;
      }
    }
  }
}

class ProxyConn implements ProxyConnInfo {
  readonly id: number;
  readonly openedAt = Date.now();
  kind: ConnKind = "query";
  stalled = false;
  bytesUp = 0;
  bytesDown = 0;
  readonly client: Socket;
  readonly server: Socket;
  #proxy: TcpProxy;
  #closed = false;
  /** chunks waiting for their latency or for the end of a stall, per direction, in order */
  #pending: { up: { at: number; buf: Buffer }[]; down: { at: number; buf: Buffer }[] } = { up: [], down: [] };
  #timers: { up: NodeJS.Timeout | null; down: NodeJS.Timeout | null } = { up: null, down: null };
  /** a side closed while stalled: the close reaches the other side only on resume (half-open) */
  #closeOnResume = false;
  #sniffer = new CommandSniffer();

  constructor(id: number, client: Socket, port: number, proxy: TcpProxy) {
    this.id = id;
    this.client = client;
    this.#proxy = proxy;
    this.server = connect({ host: "127.0.0.1", port });
    client.setNoDelay(true);
    this.server.setNoDelay(true);
    this.#sniffer.onCommand = (cmd) => {
      if (cmd === COM_BINLOG_DUMP || cmd === COM_BINLOG_DUMP_GTID) this.kind = "binlog";
    };
    client.on("data", (d: Buffer) => {
      this.bytesUp += d.length;
      this.#sniffer.feed(d);
      this.#push("up", d);
    });
    this.server.on("data", (d: Buffer) => {
      this.bytesDown += d.length;
      this.#push("down", d);
    });
    const onGone = () => {
      if (this.stalled) this.#closeOnResume = true;
      else this.destroy();
    };
    for (const s of [client, this.server]) {
      s.on("error", onGone);
      s.on("close", onGone);
      s.on("end", onGone);
    }
  }

  #push(dir: "up" | "down", buf: Buffer): void {
    const q = this.#pending[dir];
    const latency = this.#proxy.latencyMs;
    if (latency <= 0 && q.length === 0 && !this.stalled) {
      this.#write(dir, buf);
      return;
    }
    const last = q.length ? q[q.length - 1].at : 0;
    q.push({ at: Math.max(Date.now() + latency, last), buf });
    this.#schedule(dir);
  }

  #write(dir: "up" | "down", buf: Buffer): void {
    const to = dir === "up" ? this.server : this.client;
    const from = dir === "up" ? this.client : this.server;
    if (to.destroyed) return;
    // back-pressure: stop reading the sender while the receiver's buffer is full
    if (!to.write(buf)) {
      from.pause();
      to.once("drain", () => {
        if (!this.stalled) from.resume();
      });
    }
  }

  #schedule(dir: "up" | "down"): void {
    if (this.#timers[dir] || this.stalled || this.#closed) return;
    const q = this.#pending[dir];
    if (!q.length) return;
    const wait = Math.max(0, q[0].at - Date.now());
    this.#timers[dir] = setTimeout(() => {
      this.#timers[dir] = null;
      if (this.stalled || this.#closed) return;
      const now = Date.now();
      while (q.length && q[0].at <= now) this.#write(dir, q.shift()!.buf);
      this.#schedule(dir);
    }, wait);
  }

  stall(): void {
    if (this.#closed || this.stalled) return;
    this.stalled = true;
    // stop reading both sides: the kernel buffers fill and TCP back-pressure holds the peers; nothing is
    // closed and nothing is delivered — a half-open connection as far as either end can tell
    this.client.pause();
    this.server.pause();
    for (const dir of ["up", "down"] as const) {
      if (this.#timers[dir]) clearTimeout(this.#timers[dir]!);
      this.#timers[dir] = null;
    }
  }

  resume(): void {
    if (!this.stalled) return;
    this.stalled = false;
    if (this.#closeOnResume) {
      this.destroy();
      return;
    }
    this.#schedule("up");
    this.#schedule("down");
    this.client.resume();
    this.server.resume();
  }

  destroy(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const dir of ["up", "down"] as const) if (this.#timers[dir]) clearTimeout(this.#timers[dir]!);
    this.client.destroy();
    this.server.destroy();
    this.#proxy.forget(this);
  }
}

export class TcpProxy {
  /** the port the agent connects to */
  port = 0;
  latencyMs = 0;
  readonly target: number;
  readonly name: string;
  #server: Server;
  #conns = new Set<ProxyConn>();
  #nextId = 1;
  /** counters for reports */
  readonly stats = { accepted: 0, dropped: 0, stalled: 0 };

  constructor(targetPort: number, name = `proxy:${targetPort}`) {
    this.target = targetPort;
    this.name = name;
    this.#server = createServer((client) => {
      this.stats.accepted++;
      const c = new ProxyConn(this.#nextId++, client, this.target, this);
      this.#conns.add(c);
      if (this.#partitioned) c.stall();
    });
  }

  static async start(targetPort: number, name?: string, listenPort = 0): Promise<TcpProxy> {
    const p = new TcpProxy(targetPort, name);
    await new Promise<void>((resolve, reject) => {
      p.#server.once("error", reject);
      p.#server.listen(listenPort, "127.0.0.1", () => {
        p.#server.off("error", reject);
        const a = p.#server.address();
        p.port = typeof a === "object" && a ? a.port : 0;
        resolve();
      });
    });
    return p;
  }

  /** current connections */
  connections(): ProxyConnInfo[] {
    return [...this.#conns];
  }

  /** add `ms` of one-way delay to every chunk, both directions (0 removes it) */
  latency(ms: number): void {
    this.latencyMs = Math.max(0, ms);
  }

  #select(target: Target): ProxyConn[] {
    return [...this.#conns].filter((c) => (target === "all" ? true : typeof target === "function" ? target(c) : c.kind === target));
  }

  /** destroy the current connections (both ends see the connection closed); returns how many */
  drop(target: Target = "all"): number {
    const sel = this.#select(target);
    for (const c of sel) c.destroy();
    this.stats.dropped += sel.length;
    return sel.length;
  }

  /**
   * Stop forwarding on the current connections, both directions, without closing them (half-open): the
   * peers see neither data nor a close. Connections opened later are not stalled. Returns how many.
   */
  stall(target: Target = "all"): number {
    const sel = this.#select(target).filter((c) => !c.stalled);
    for (const c of sel) c.stall();
    this.stats.stalled += sel.length;
    return sel.length;
  }

  /** forward again on every stalled connection (a side that closed meanwhile closes the other now) */
  resume(): void {
    this.#partitioned = false;
    for (const c of this.#conns) c.resume();
  }

  #partitioned = false;

  /**
   * A network partition: every current connection stalls (half-open, as `stall`), and so does every new
   * one from its first byte (a connect attempt hangs until the client's timeout). `resume()` heals it.
   */
  partition(): number {
    this.#partitioned = true;
    return this.stall("all");
  }

  /** @internal */
  forget(c: ProxyConn): void {
    this.#conns.delete(c);
  }

  async close(): Promise<void> {
    for (const c of [...this.#conns]) c.destroy();
    await new Promise<void>((r) => this.#server.close(() => r()));
  }
}
