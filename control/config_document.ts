/**
 * Writes a changed configuration back into the operator's YAML document without losing what the
 * operator wrote around it: a plain value is merged into the existing node tree so that only the
 * nodes whose values changed are touched. Comments, key order, quoting and flow/block style of
 * everything else survive, and a changed scalar keeps its own comment.
 *
 * What is not kept: npm:yaml prints every flow collection with inner padding (`[ a, b ]`,
 * `{ a: 1 }`), so a file written `[a, b]` gets that spacing at its first change.
 *
 * Lists of mappings are matched by identity, not position — services by `name`, reals by
 * `address` and `port` — so deleting the second service does not rewrite the third into the
 * second's node (and move the operator's comments with it).
 *
 * @module
 */
import {
  type Document,
  isCollection,
  isMap,
  isScalar,
  isSeq,
  type Node,
  type Pair,
  parseDocument,
  visit,
  type YAMLMap,
  type YAMLSeq,
} from "yaml";

/**
 * Parses the operator's configuration text into a document that prints back byte for byte.
 * npm:yaml files a comment written after `key:` on the key's own line as the comment before
 * the block collection that follows, and prints it on a line of its own; moving it to the key
 * keeps it where the operator wrote it.
 */
export function parseConfigDocument(text: string): Document {
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: false });
  visit(doc, {
    Pair(_, pair) {
      const value = pair.value;
      if (!isCollection(value) || value.flow || !value.commentBefore || !isScalar(pair.key)) {
        return;
      }
      const keyEnd = pair.key.range?.[1];
      const valueStart = value.range?.[0];
      if (keyEnd === undefined || valueStart === undefined) return;
      const between = text.slice(keyEnd, valueStart);
      const hash = between.indexOf("#");
      const newline = between.indexOf("\n");
      if (hash >= 0 && (newline < 0 || hash < newline)) {
        pair.key.comment = value.commentBefore;
        value.commentBefore = undefined;
      }
    },
  });
  return doc;
}

/** Whether two plain values are equal as JSON data. */
function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== typeof b || a === null || b === null || typeof a !== "object") return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    const bs = b as unknown[];
    return a.length === bs.length && a.every((v, i) => sameValue(v, bs[i]));
  }
  const ao = a as Record<string, unknown>;
  const bo = b as Record<string, unknown>;
  const keys = Object.keys(ao).filter((k) => ao[k] !== undefined);
  const bkeys = Object.keys(bo).filter((k) => bo[k] !== undefined);
  return keys.length === bkeys.length && keys.every((k) => sameValue(ao[k], bo[k]));
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** What identifies a mapping among its siblings in a list; null when it has no identity. */
function identity(v: unknown): string | null {
  if (!isPlainObject(v)) return null;
  if (typeof v.name === "string") return `name=${v.name}`;
  if (typeof v.address === "string") return `address=${v.address}:${String(v.port ?? "")}`;
  return null;
}

function nodeValue(node: unknown): unknown {
  return node !== null && typeof node === "object" && "toJSON" in node
    ? (node as Node).toJSON()
    : node;
}

/** A new node for `value`, in flow style when its siblings are written that way. */
function createLike(doc: Document, value: unknown, sibling: unknown): Node {
  const node = doc.createNode(value) as Node;
  if ((isMap(sibling) || isSeq(sibling)) && sibling.flow && (isMap(node) || isSeq(node))) {
    node.flow = true;
  }
  return node;
}

/** Merges `value` into `node` in place when the kinds match; returns the node to keep there. */
function merged(doc: Document, node: unknown, value: unknown): unknown {
  if (sameValue(nodeValue(node), value)) return node;
  if (isMap(node) && isPlainObject(value)) {
    mergeMap(doc, node, value);
    return node;
  }
  if (isSeq(node) && Array.isArray(value)) {
    mergeSeq(doc, node, value);
    return node;
  }
  if (isScalar(node) && (value === null || typeof value !== "object")) {
    // Keeps the scalar's comments; its quoting style is reset only if the type changed.
    if (typeof node.value !== typeof value) node.type = undefined;
    node.value = value;
    return node;
  }
  return createLike(doc, value, node);
}

function mergeMap(doc: Document, node: YAMLMap, value: Record<string, unknown>): void {
  const wanted = Object.entries(value).filter(([, v]) => v !== undefined);
  const keyOf = (p: Pair) => String(nodeValue(p.key));
  node.items = node.items.filter((p) =>
    Object.hasOwn(value, keyOf(p)) && value[keyOf(p)] !== undefined
  );
  for (const [key, v] of wanted) {
    const pair = node.items.find((p) => keyOf(p) === key);
    if (pair === undefined) {
      const sibling = node.items.find((p) => isMap(p.value) || isSeq(p.value))?.value;
      node.set(key, createLike(doc, v, sibling));
    } else {
      pair.value = merged(doc, pair.value, v);
    }
  }
}

function mergeSeq(doc: Document, node: YAMLSeq, value: unknown[]): void {
  const old = [...node.items];
  // `services: []` was only a placeholder: mappings go in block style, one per entry.
  if (node.flow && old.length === 0 && value.some((v) => typeof v === "object" && v !== null)) {
    node.flow = false;
  }
  // And an emptied list goes back to `key: []` (block style would print `key:\n  []`).
  if (value.length === 0) node.flow = true;
  const byIdentity = new Map<string, unknown>();
  for (const item of old) {
    const id = identity(nodeValue(item));
    if (id !== null && !byIdentity.has(id)) byIdentity.set(id, item);
  }
  const used = new Set<unknown>();
  node.items = value.map((v, i) => {
    const id = identity(v);
    const match: unknown = id === null ? old[i] : byIdentity.get(id);
    if (match !== undefined && !used.has(match)) {
      used.add(match);
      return merged(doc, match, v);
    }
    return createLike(doc, v, old[0]);
  });
}

/**
 * Makes `doc`'s contents equal `value` (a plain JSON-like object), changing only the nodes that
 * differ. Throws when the document's root is not a mapping.
 */
export function mergeIntoDocument(doc: Document, value: Record<string, unknown>): void {
  if (doc.contents === null) {
    doc.contents = doc.createNode(value) as YAMLMap;
    return;
  }
  if (!isMap(doc.contents)) throw new Error("the configuration document is not a mapping");
  mergeMap(doc, doc.contents, value);
}
