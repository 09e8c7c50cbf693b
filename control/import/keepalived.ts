/**
 * keepalived.conf → tunvs, the checker part only: a real_server's TCP_CHECK (with the
 * virtual_server's delay_loop) becomes the equivalent health_check model. The full importer
 * (virtual_server, lb_algo, lb_kind...) belongs to issue 5 and can build on parseKeepalivedConf.
 */
import { HEALTH_CHECK_DEFAULTS, type HealthCheckConfig } from "../health/types.ts";

/** One keepalived statement: its keyword, its arguments, and its `{ }` children if a block. */
export interface KeepalivedNode {
  keyword: string;
  args: string[];
  children: KeepalivedNode[];
  /** 1-based line of the keyword, for messages. */
  line: number;
}

/**
 * Parses keepalived.conf's syntax: one statement per line, `#` and `!` start comments, a
 * trailing `{` opens a block that a `}` closes. Unknown keywords are kept, not judged.
 */
export function parseKeepalivedConf(text: string): KeepalivedNode[] {
  const root: KeepalivedNode[] = [];
  const stack: KeepalivedNode[][] = [root];
  text.split("\n").forEach((raw, index) => {
    const code = raw.replace(/[#!].*$/, "");
    const words = code.replace(/([{}])/g, " $1 ").trim().split(/\s+/).filter((w) => w !== "");
    let current: KeepalivedNode | null = null;
    for (const word of words) {
      const siblings = stack[stack.length - 1];
      if (word === "{") {
        const owner: KeepalivedNode = current ??
          { keyword: "", args: [], children: [], line: index + 1 };
        if (current === null) siblings.push(owner);
        stack.push(owner.children);
        current = null;
      } else if (word === "}") {
        if (stack.length === 1) throw new Error(`line ${index + 1}: "}" without a block to close`);
        stack.pop();
        current = null;
      } else if (current === null) {
        current = { keyword: word, args: [], children: [], line: index + 1 };
        siblings.push(current);
      } else {
        current.args.push(word);
      }
    }
  });
  if (stack.length !== 1) throw new Error("unclosed block at the end of the file");
  return root;
}

function numberArg(node: KeepalivedNode): number {
  const value = Number(node.args[0]);
  if (node.args.length !== 1 || !Number.isFinite(value) || value < 0) {
    throw new Error(`line ${node.line}: ${node.keyword} needs one non-negative number`);
  }
  return value;
}

/**
 * The health check a real_server's TCP_CHECK stands for: connect_timeout → timeout,
 * nb_get_retry / retry → retry, delay_before_retry, connect_port → port, and the
 * virtual_server's delay_loop → interval; unset ones take keepalived's defaults. Returns null
 * for a real_server without TCP_CHECK; other checkers are not imported yet and throw.
 */
export function healthCheckFromRealServer(
  virtualServer: KeepalivedNode,
  realServer: KeepalivedNode,
): HealthCheckConfig | null {
  const d = HEALTH_CHECK_DEFAULTS;
  const check = realServer.children.find((c) => /_CHECK$|^SSL_GET$|^HTTP_GET$/.test(c.keyword));
  if (check === undefined) return null;
  if (check.keyword !== "TCP_CHECK") {
    throw new Error(`line ${check.line}: ${check.keyword} is not imported yet (TCP_CHECK only)`);
  }
  const delayLoop = virtualServer.children.find((c) => c.keyword === "delay_loop");
  const config: HealthCheckConfig = {
    type: "tcp",
    interval: delayLoop === undefined ? d.interval : numberArg(delayLoop),
    timeout: d.timeout,
    retry: d.retry,
    delayBeforeRetry: d.delayBeforeRetry,
    rise: d.rise,
    fall: d.fall,
    alpha: virtualServer.children.some((c) => c.keyword === "alpha"),
  };
  for (const option of check.children) {
    switch (option.keyword) {
      case "connect_timeout":
        config.timeout = numberArg(option);
        break;
      case "nb_get_retry":
      case "retry":
        config.retry = numberArg(option);
        break;
      case "delay_before_retry":
        config.delayBeforeRetry = numberArg(option);
        break;
      case "connect_port": {
        const port = numberArg(option);
        if (!Number.isInteger(port) || port < 1 || port > 65535) {
          throw new Error(`line ${option.line}: connect_port must be 1-65535`);
        }
        config.port = port;
        break;
      }
      default:
        throw new Error(`line ${option.line}: TCP_CHECK option ${option.keyword} is not imported`);
    }
  }
  return config;
}
