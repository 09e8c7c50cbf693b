/**
 * `deno task compile`: builds `dist/tunvs`, one executable with every
 * permission and module it needs (the dataplane worker is loaded by URL, so it
 * is included explicitly). `deno compile` downloads the Deno runtime it
 * embeds; where that download is impossible the task says so and builds
 * nothing (exit code 3), rather than leaving a half-made binary behind.
 */

/** Exit code of a compile that was skipped because the runtime could not be had. */
export const SKIPPED = 3;

/** Where the executable goes. */
export const OUTPUT = new URL("../dist/tunvs", import.meta.url).pathname;

if (import.meta.main) {
  const root = new URL("..", import.meta.url).pathname;
  await Deno.mkdir(`${root}/dist`, { recursive: true });
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "compile",
      "--allow-all",
      "--include",
      "dataplane/worker.ts",
      "--output",
      OUTPUT,
      "mod.ts",
    ],
    cwd: root,
    stdout: "inherit",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  if (out.success) {
    console.log(`built ${OUTPUT}`);
    Deno.exit(0);
  }
  if (/denort|Setting up base binary/i.test(stderr)) {
    await Deno.remove(OUTPUT).catch(() => {});
    const cause = stderr.split("\n").find((l) => /error sending request|dns|Connect/i.test(l));
    console.error(
      "tunvs compile: SKIPPED, nothing was built. `deno compile` must download the Deno " +
        "runtime it embeds (denort), and this machine cannot reach it" +
        (cause ? ` (${cause.trim()})` : "") +
        ". Run the task where Deno's download server is reachable, or point DENORT_BIN at a local " +
        "denort binary of the same Deno version.",
    );
    Deno.exit(SKIPPED);
  }
  console.error(stderr);
  Deno.exit(1);
}
