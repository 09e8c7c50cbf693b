/**
 * Network-namespace lab: creates named namespaces, wires them with veths and bridges, runs
 * processes inside them, and tears everything down again — even after a crashed run, because
 * every namespace name carries the pid of the process that made it.
 */

/** Result of a finished command. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Options for {@linkcode run}. */
export interface RunOptions {
  /** Network namespace to run in (by `ip netns exec`); the current one when absent. */
  ns?: string;
  /** Text fed to the command's standard input. */
  stdin?: string;
  /** Return a non-zero exit instead of throwing. */
  allowFail?: boolean;
  /** Working directory. */
  cwd?: string;
  /** Extra environment variables. */
  env?: Record<string, string>;
}

/** How a spawned process's output stream is connected. */
export type StdioMode = "piped" | "null" | "inherit";

/** Options for {@linkcode Lab.spawn}. */
export interface SpawnOptions {
  stdin?: StdioMode;
  stdout?: StdioMode;
  stderr?: StdioMode;
  env?: Record<string, string>;
  cwd?: string;
}

/** Prefix of every namespace and temp dir name the lab makes. */
export const LAB_PREFIX = "tv";

/** Width of the base-36 pid field in lab names; 5 digits cover the kernel's largest pid_max. */
const PID_WIDTH = 5;

/** Roles become parts of names (namespaces, bridge ports), so they stay short and plain. */
const ROLE_PATTERN = /^[a-z][a-z0-9]{0,9}$/;

const LAB_NAME_PATTERN = new RegExp(
  `^${LAB_PREFIX}([0-9a-z]{${PID_WIDTH}})([0-9a-z]+)-(.*)$`,
);

/** Builds the unique lab id (`tv<pid36><counter36>`) that prefixes all of a lab's names. */
export function labId(pid: number, counter: number): string {
  return `${LAB_PREFIX}${pid.toString(36).padStart(PID_WIDTH, "0")}${counter.toString(36)}`;
}

/** Decodes a name made from {@linkcode labId}; null when the name is not one of ours. */
export function parseLabName(
  name: string,
): { id: string; pid: number; counter: number; rest: string } | null {
  const m = LAB_NAME_PATTERN.exec(name);
  if (!m) return null;
  return {
    id: `${LAB_PREFIX}${m[1]}${m[2]}`,
    pid: parseInt(m[1], 36),
    counter: parseInt(m[2], 36),
    rest: m[3],
  };
}

/** Throws unless `role` can be used as a namespace role (it becomes part of interface names). */
export function assertRole(role: string): void {
  if (!ROLE_PATTERN.test(role)) {
    throw new Error(`lab role ${JSON.stringify(role)} must match ${ROLE_PATTERN}`);
  }
}

function quoteArg(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`;
}

/** Renders a command line for error messages. */
export function formatCommand(cmd: readonly string[]): string {
  return cmd.map(quoteArg).join(" ");
}

function nsPrefix(ns: string | undefined): string[] {
  return ns ? ["ip", "netns", "exec", ns] : [];
}

/** Runs a command to completion; throws (naming command and stderr) on failure unless allowFail. */
export async function run(cmd: string[], opts: RunOptions = {}): Promise<RunResult> {
  const full = [...nsPrefix(opts.ns), ...cmd];
  const command = new Deno.Command(full[0], {
    args: full.slice(1),
    stdin: opts.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    cwd: opts.cwd,
    env: opts.env,
  });
  let child: Deno.ChildProcess;
  try {
    child = command.spawn();
  } catch (err) {
    throw new Error(`cannot start ${formatCommand(full)}: ${(err as Error).message}`);
  }
  if (opts.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    try {
      await writer.write(new TextEncoder().encode(opts.stdin));
      await writer.close();
    } catch {
      // The command may exit without reading its input; its exit status tells the story.
    }
  }
  const out = await child.output();
  const result: RunResult = {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
  if (result.code !== 0 && !opts.allowFail) {
    throw new Error(
      `command failed (exit ${result.code}): ${formatCommand(full)}\n${result.stderr.trim()}`,
    );
  }
  return result;
}

/** Keeps the text a stream produces (up to `limit` bytes, the newest kept) while it runs. */
export class OutputCollector {
  #chunks: Uint8Array[] = [];
  #size = 0;
  readonly #limit: number;
  /** Resolves when the stream has ended. */
  readonly done: Promise<void>;

  /** Starts draining `stream` at once so the producer never blocks on a full pipe. */
  constructor(stream: ReadableStream<Uint8Array>, limit = 4 << 20) {
    this.#limit = limit;
    this.done = this.#drain(stream);
  }

  async #drain(stream: ReadableStream<Uint8Array>): Promise<void> {
    try {
      for await (const chunk of stream) {
        this.#chunks.push(chunk);
        this.#size += chunk.length;
        while (this.#size > this.#limit && this.#chunks.length > 1) {
          this.#size -= this.#chunks.shift()!.length;
        }
      }
    } catch {
      // A stream cancelled during teardown simply ends the capture.
    }
  }

  /** Everything captured so far, decoded as UTF-8. */
  text(): string {
    const all = new Uint8Array(this.#size);
    let off = 0;
    for (const c of this.#chunks) {
      all.set(c, off);
      off += c.length;
    }
    return new TextDecoder().decode(all);
  }
}

/** True when a process with this pid exists on this host. */
export async function pidAlive(pid: number): Promise<boolean> {
  try {
    await Deno.stat(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

/** Names of all named network namespaces (`ip netns list`). */
export async function listNamespaces(): Promise<string[]> {
  const res = await run(["ip", "netns", "list"], { allowFail: true });
  if (res.code !== 0) return [];
  return res.stdout.split("\n").map((l) => l.trim().split(/\s+/)[0]).filter((n) => n.length > 0);
}

/** Pids of processes whose network namespace is `ns`. */
async function namespacePids(ns: string): Promise<number[]> {
  const res = await run(["ip", "netns", "pids", ns], { allowFail: true });
  return res.stdout.split(/\s+/).filter((s) => /^\d+$/.test(s)).map(Number);
}

function killQuietly(pid: number, signal: Deno.Signal): void {
  try {
    Deno.kill(pid, signal);
  } catch {
    // Already gone.
  }
}

/** Kills whatever still runs inside `ns`, then deletes it; never throws. */
async function removeNamespace(ns: string): Promise<string | null> {
  for (const pid of await namespacePids(ns)) {
    if (pid !== Deno.pid) killQuietly(pid, "SIGKILL");
  }
  const res = await run(["ip", "netns", "delete", ns], { allowFail: true });
  if (res.code === 0) return null;
  const left = await listNamespaces();
  return left.includes(ns) ? `ip netns delete ${ns}: ${res.stderr.trim()}` : null;
}

/** Directory holding the labs' temp dirs, so sweeping never touches anyone else's files. */
function tempRoot(): string {
  return `${Deno.env.get("TMPDIR") || "/tmp"}/tunvs-lab`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Waits for `p` at most `ms` milliseconds; true when it settled in time. */
export async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([p.then(() => true, () => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

let labCounter = 0;
let sweptThisProcess = false;

/**
 * A set of network namespaces (one per role) plus the processes and temp files living in them;
 * `destroy()` removes all of it.
 */
export class Lab {
  /** Unique id prefixing every namespace of this lab, e.g. `tv00abc1`. */
  readonly id: string;
  /** Free-form label for messages (e.g. the test's name). */
  readonly tag: string;
  readonly #namespaces = new Map<string, string>();
  readonly #children = new Set<Deno.ChildProcess>();
  readonly #cleanups: Array<() => unknown> = [];
  #destroyed = false;
  #destroying: Promise<void> | null = null;

  private constructor(id: string, tag: string) {
    this.id = id;
    this.tag = tag;
  }

  /** Makes a new, empty lab; needs root. The first lab of a process sweeps stale ones first. */
  static async create(tag: string): Promise<Lab> {
    if (Deno.uid() !== 0) {
      throw new Error("the namespace lab needs root (ip netns, veth, bridges): run it as root");
    }
    if (!sweptThisProcess) {
      sweptThisProcess = true;
      await Lab.sweepStale();
    }
    // A reused pid can meet namespaces its dead namesake left: take the next unused id.
    const taken = await listNamespaces();
    let id = labId(Deno.pid, labCounter++);
    while (taken.some((ns) => ns.startsWith(`${id}-`))) id = labId(Deno.pid, labCounter++);
    return new Lab(id, tag);
  }

  /**
   * Removes namespaces and temp dirs left by labs whose creating process is gone;
   * returns the namespaces it removed.
   */
  static async sweepStale(): Promise<string[]> {
    const removed: string[] = [];
    const alive = new Map<number, boolean>();
    const isStale = async (name: string): Promise<boolean> => {
      const parsed = parseLabName(name);
      if (!parsed) return false;
      if (!alive.has(parsed.pid)) alive.set(parsed.pid, await pidAlive(parsed.pid));
      return !alive.get(parsed.pid);
    };
    for (const ns of await listNamespaces()) {
      if (!(await isStale(ns))) continue;
      const err = await removeNamespace(ns);
      if (err === null) removed.push(ns);
    }
    try {
      for await (const entry of Deno.readDir(tempRoot())) {
        if (entry.isDirectory && (await isStale(entry.name))) {
          await Deno.remove(`${tempRoot()}/${entry.name}`, { recursive: true }).catch(() => {});
        }
      }
    } catch {
      // No readable temp dir: nothing of ours can be there.
    }
    return removed;
  }

  /** True once destroy() has begun; long-running drivers use it to stop early. */
  get destroyed(): boolean {
    return this.#destroyed;
  }

  /** Roles created so far, in creation order. */
  get roles(): string[] {
    return [...this.#namespaces.keys()];
  }

  /** Namespace name of `role`; throws for an unknown role. */
  nsName(role: string): string {
    const ns = this.#namespaces.get(role);
    if (!ns) throw new Error(`lab ${this.id}: no namespace for role ${JSON.stringify(role)}`);
    return ns;
  }

  #assertLive(): void {
    if (this.#destroyed) throw new Error(`lab ${this.id} (${this.tag}) is destroyed`);
  }

  /** Creates the namespace for `role` with `lo` up and returns its name. */
  async addNamespace(role: string): Promise<string> {
    this.#assertLive();
    assertRole(role);
    if (this.#namespaces.has(role)) throw new Error(`lab ${this.id}: role ${role} exists`);
    const ns = `${this.id}-${role}`;
    // Remembered before creation so a half-made namespace is still removed by destroy().
    this.#namespaces.set(role, ns);
    await run(["ip", "netns", "add", ns]);
    await run(["ip", "-n", ns, "link", "set", "lo", "up"]);
    return ns;
  }

  /** Runs a command inside `role`'s namespace. */
  exec(role: string, cmd: string[], opts: Omit<RunOptions, "ns"> = {}): Promise<RunResult> {
    this.#assertLive();
    return run(cmd, { ...opts, ns: this.nsName(role) });
  }

  /** Runs `ip <args>` against `role`'s namespace (`ip -n`). */
  ip(role: string, ...args: string[]): Promise<RunResult> {
    this.#assertLive();
    return run(["ip", "-n", this.nsName(role), ...args]);
  }

  /** Starts a long-running process inside `role`'s namespace; destroy() stops it. */
  spawn(role: string, cmd: string[], opts: SpawnOptions = {}): Deno.ChildProcess {
    this.#assertLive();
    const full = [...nsPrefix(this.nsName(role)), ...cmd];
    const child = new Deno.Command(full[0], {
      args: full.slice(1),
      stdin: opts.stdin ?? "null",
      stdout: opts.stdout ?? "inherit",
      stderr: opts.stderr ?? "inherit",
      env: opts.env,
      cwd: opts.cwd,
    }).spawn();
    this.#children.add(child);
    child.status.then(() => this.#children.delete(child), () => this.#children.delete(child));
    return child;
  }

  /** Makes a temp dir (named after this lab, so sweepStale finds it) that destroy() removes. */
  async makeTempDir(purpose: string): Promise<string> {
    this.#assertLive();
    await Deno.mkdir(tempRoot(), { recursive: true });
    const dir = await Deno.makeTempDir({ dir: tempRoot(), prefix: `${this.id}-${purpose}-` });
    this.onDestroy(() => Deno.remove(dir, { recursive: true }));
    return dir;
  }

  /** Registers a callback that destroy() runs (newest first) before stopping processes. */
  onDestroy(fn: () => unknown): void {
    this.#cleanups.push(fn);
  }

  /** Writes a sysctl inside `role`'s namespace, e.g. `sysctl("director", "net.ipv4.ip_forward", 0)`. */
  async sysctl(role: string, key: string, value: string | number): Promise<void> {
    await this.exec(role, [
      "sh",
      "-c",
      'printf "%s\\n" "$1" > "$2"',
      "sh",
      String(value),
      sysctlPath(key),
    ]);
  }

  /** Reads a sysctl inside `role`'s namespace. */
  async readSysctl(role: string, key: string): Promise<string> {
    const res = await this.exec(role, ["cat", sysctlPath(key)]);
    return res.stdout.trim();
  }

  /**
   * Connects two namespaces with a veth pair, each end created directly in its namespace
   * (so the names only need to be unique there), and brings both ends up.
   */
  async link(roleA: string, ifA: string, roleB: string, ifB: string): Promise<void> {
    assertIfName(ifA);
    assertIfName(ifB);
    await this.ip(
      roleA,
      "link",
      "add",
      ifA,
      "type",
      "veth",
      "peer",
      "name",
      ifB,
      "netns",
      this.nsName(roleB),
    );
    await this.ip(roleA, "link", "set", ifA, "up");
    await this.ip(roleB, "link", "set", ifB, "up");
  }

  /** Creates an up bridge in `role`'s namespace that forwards at once (no STP delay). */
  async bridge(role: string, name: string): Promise<void> {
    assertIfName(name);
    await this.ip(
      role,
      "link",
      "add",
      name,
      "type",
      "bridge",
      "forward_delay",
      "0",
      "stp_state",
      "0",
    );
    await this.ip(role, "link", "set", name, "up");
  }

  /** Enslaves `iface` to `bridge` in `role`'s namespace. */
  async attach(role: string, iface: string, bridge: string): Promise<void> {
    await this.ip(role, "link", "set", iface, "master", bridge, "up");
  }

  /** Adds an address in CIDR form (`10.0.0.1/24`) to an interface. */
  async addAddress(role: string, iface: string, cidr: string): Promise<void> {
    await this.ip(role, "addr", "add", cidr, "dev", iface);
  }

  /** Sets the default route of `role`'s namespace. */
  async defaultRoute(role: string, via: string): Promise<void> {
    await this.ip(role, "route", "replace", "default", "via", via);
  }

  /**
   * Runs cleanup callbacks, stops every spawned process (SIGTERM, SIGKILL after ~2 s) and deletes
   * every namespace; continues past failures, throws an aggregate at the end; safe to call twice.
   */
  destroy(): Promise<void> {
    if (!this.#destroying) this.#destroying = this.#teardown();
    return this.#destroying;
  }

  async #teardown(): Promise<void> {
    this.#destroyed = true;
    const problems: string[] = [];
    for (const fn of this.#cleanups.splice(0).reverse()) {
      try {
        await fn();
      } catch (err) {
        problems.push(`cleanup: ${(err as Error).message}`);
      }
    }
    const children = [...this.#children];
    for (const child of children) killChild(child, "SIGTERM");
    const allExited = Promise.all(children.map((c) => c.status));
    if (!(await settlesWithin(allExited, 2000))) {
      for (const child of children) killChild(child, "SIGKILL");
      if (!(await settlesWithin(allExited, 2000))) {
        problems.push(`some processes of lab ${this.id} did not exit after SIGKILL`);
      }
    }
    for (const child of children) releaseStreams(child);
    for (const ns of [...this.#namespaces.values()].reverse()) {
      const err = await removeNamespace(ns);
      if (err) problems.push(err);
    }
    this.#namespaces.clear();
    if (problems.length > 0) {
      throw new Error(`lab ${this.id} (${this.tag}) teardown:\n  ${problems.join("\n  ")}`);
    }
  }
}

/**
 * Sends `signal` to a child, and SIGKILL if it has not exited after `graceMs`; resolves once it
 * has exited.
 */
export async function stopProcess(
  child: Deno.ChildProcess,
  signal: Deno.Signal = "SIGTERM",
  graceMs = 2000,
): Promise<Deno.CommandStatus> {
  killChild(child, signal);
  if (!(await settlesWithin(child.status, graceMs))) killChild(child, "SIGKILL");
  return await child.status;
}

function killChild(child: Deno.ChildProcess, signal: Deno.Signal): void {
  try {
    child.kill(signal);
  } catch {
    // Exited already.
  }
}

/** Cancels unread piped output so no resource outlives the lab. */
function releaseStreams(child: Deno.ChildProcess): void {
  for (const get of [() => child.stdout, () => child.stderr]) {
    let stream: ReadableStream<Uint8Array>;
    try {
      stream = get();
    } catch {
      continue; // Not piped.
    }
    if (!stream.locked) stream.cancel().catch(() => {});
  }
}

/** Dotted keys map dots to '/'; a key already containing '/' is taken as a path (for `eth0.5`). */
function sysctlPath(key: string): string {
  if (!/^[\w.\-/]+$/.test(key) || key.includes("..")) {
    throw new Error(`bad sysctl key ${JSON.stringify(key)}`);
  }
  return `/proc/sys/${key.includes("/") ? key : key.replaceAll(".", "/")}`;
}

/** Throws unless `name` is a valid Linux interface name (1–15 chars, no '/', ':' or space). */
export function assertIfName(name: string): void {
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(name)) {
    throw new Error(`interface name ${JSON.stringify(name)} must be 1-15 chars of [A-Za-z0-9_.-]`);
  }
}

/** Polls `probe` until it returns true or `timeoutMs` passes; returns whether it succeeded. */
export async function pollUntil(
  probe: () => Promise<boolean>,
  timeoutMs: number,
  intervalMs = 100,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    if (await probe()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(intervalMs);
  }
}
