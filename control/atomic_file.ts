/**
 * Writing a file so that a crash at any point leaves the old file or the new one, never a torn
 * one: the text goes to a temporary file in the same directory, is flushed to disk, and then
 * takes the name in one step (rename; or link when an existing file must not be replaced).
 */

/** The target exists and replacing it was not asked for. */
export class FileExistsError extends Error {
  /** `path` is the file that exists. */
  constructor(readonly path: string) {
    super(`${path} exists; use --force to replace it`);
  }
}

function directoryOf(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash < 0 ? "." : slash === 0 ? "/" : path.slice(0, slash);
}

/** Flushes a directory's entries (the new name) to disk; some file systems cannot, harmlessly. */
async function syncDirectory(dir: string): Promise<void> {
  let handle: Deno.FsFile | undefined;
  try {
    handle = await Deno.open(dir, { read: true });
    await handle.sync();
  } catch {
    // The data itself was synced; only the rename's durability is left to the file system.
  } finally {
    handle?.close();
  }
}

/**
 * Writes `text` to `path` atomically. Without `replace`, an existing file is left alone and
 * FileExistsError thrown; with it, the file is replaced (keeping its permissions).
 */
export async function writeFileAtomic(
  path: string,
  text: string,
  options: { replace: boolean },
): Promise<void> {
  const dir = directoryOf(path);
  const base = path.slice(path.lastIndexOf("/") + 1);
  let mode = 0o644;
  if (options.replace) {
    try {
      mode = (await Deno.stat(path)).mode! & 0o7777;
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
  } else if (await exists(path)) {
    throw new FileExistsError(path);
  }
  const temp = `${dir}/.${base}.${Deno.pid}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  const file = await Deno.open(temp, { write: true, createNew: true, mode });
  try {
    try {
      let bytes = new TextEncoder().encode(text);
      while (bytes.length > 0) bytes = bytes.subarray(await file.write(bytes));
      await file.sync();
    } finally {
      file.close();
    }
    if (options.replace) {
      await Deno.rename(temp, path);
    } else {
      // link fails when the name was taken meanwhile: nothing is ever overwritten.
      try {
        await Deno.link(temp, path);
      } catch (err) {
        if (err instanceof Deno.errors.AlreadyExists) throw new FileExistsError(path);
        throw err;
      }
      await Deno.remove(temp);
    }
  } catch (err) {
    await Deno.remove(temp).catch(() => {});
    throw err;
  }
  await syncDirectory(dir);
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}
