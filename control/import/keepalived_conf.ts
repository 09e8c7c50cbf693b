/**
 * keepalived.conf's syntax: statements of a keyword and its arguments, one per line, blocks in
 * `{ }`, comments from `#` or `!`, double-quoted arguments kept whole. Unknown keywords are kept,
 * not judged: what they mean is the importer's business (control/import/keepalived.ts).
 */

/** One keepalived statement: its keyword, its arguments, and its `{ }` children if a block. */
export interface KeepalivedNode {
  keyword: string;
  args: string[];
  children: KeepalivedNode[];
  /** 1-based line of the keyword, for messages. */
  line: number;
}

/** A syntax error, with the line it was found on. */
export class KeepalivedSyntaxError extends Error {
  /** `line` is 1-based. */
  constructor(readonly line: number, message: string) {
    super(`line ${line}: ${message}`);
  }
}

/** The words of one line: braces stand alone, quotes group, a comment ends it. */
function lineWords(text: string, line: number): string[] {
  const words: string[] = [];
  let word = "";
  let quoted = false;
  let inQuotes = false;
  const flush = () => {
    if (word !== "" || quoted) words.push(word);
    word = "";
    quoted = false;
  };
  for (const ch of text) {
    if (inQuotes) {
      if (ch === '"') inQuotes = false;
      else word += ch;
    } else if (ch === '"') {
      inQuotes = true;
      quoted = true;
    } else if (ch === "#" || ch === "!") {
      break;
    } else if (ch === "{" || ch === "}") {
      flush();
      words.push(ch);
    } else if (/\s/.test(ch)) {
      flush();
    } else {
      word += ch;
    }
  }
  if (inQuotes) throw new KeepalivedSyntaxError(line, "a quoted string is not closed");
  flush();
  return words;
}

/**
 * Parses keepalived.conf text. A `{` opening a line belongs to the statement on the line before
 * when that statement has no block yet (keepalived reads `virtual_server … ⏎ {` that way).
 */
export function parseKeepalivedConf(text: string): KeepalivedNode[] {
  const root: KeepalivedNode[] = [];
  const stack: KeepalivedNode[][] = [root];
  // The line each open block started on, for the message when one is never closed.
  const openedOn: number[] = [];
  text.split("\n").forEach((raw, index) => {
    const line = index + 1;
    let current: KeepalivedNode | null = null;
    lineWords(raw, line).forEach((word, position) => {
      const siblings = stack[stack.length - 1];
      if (word === "{") {
        const previous = siblings[siblings.length - 1];
        const owner: KeepalivedNode = current ??
          (position === 0 && previous !== undefined && previous.children.length === 0
            ? previous
            : { keyword: "", args: [], children: [], line });
        if (current === null && owner !== previous) siblings.push(owner);
        stack.push(owner.children);
        openedOn.push(owner.line);
        current = null;
      } else if (word === "}") {
        if (stack.length === 1) {
          throw new KeepalivedSyntaxError(line, '"}" without a block to close');
        }
        stack.pop();
        openedOn.pop();
        current = null;
      } else if (current === null) {
        current = { keyword: word, args: [], children: [], line };
        siblings.push(current);
      } else {
        current.args.push(word);
      }
    });
  });
  if (openedOn.length > 0) {
    const line = openedOn[openedOn.length - 1];
    throw new KeepalivedSyntaxError(line, "the block opened here is not closed");
  }
  return root;
}
