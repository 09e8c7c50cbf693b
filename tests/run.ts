/**
 * `deno task test`: runs every test under tests/ and ends with the line CI
 * reads, `tests: N passed, N failed[, N skipped]`, counted from Deno's JUnit
 * report rather than from its console output.
 */

/** Counts of one run, from a JUnit report. */
export interface TestCounts {
  passed: number;
  failed: number;
  skipped: number;
}

/** Counts the test cases of a Deno JUnit report. */
export function countJunit(xml: string): TestCounts {
  const cases = xml.match(/<testcase\b[\s\S]*?(?:\/>|<\/testcase>)/g) ?? [];
  let failed = 0;
  let skipped = 0;
  for (const c of cases) {
    if (/<(failure|error)\b/.test(c)) failed++;
    else if (/<skipped\b/.test(c)) skipped++;
  }
  return { passed: cases.length - failed - skipped, failed, skipped };
}

if (import.meta.main) {
  const report = await Deno.makeTempFile({ prefix: "tunvs-junit-", suffix: ".xml" });
  const filters = Deno.args.length > 0 ? Deno.args : ["tests/"];
  const status = await new Deno.Command(Deno.execPath(), {
    args: ["test", "-A", `--junit-path=${report}`, ...filters],
    stdout: "inherit",
    stderr: "inherit",
  }).spawn().status;
  let counts: TestCounts;
  try {
    counts = countJunit(await Deno.readTextFile(report));
  } catch {
    counts = { passed: 0, failed: 0, skipped: 0 };
  }
  await Deno.remove(report).catch(() => {});
  // A run that died before reporting (type errors, a crash) must not read as green.
  if (!status.success && counts.failed === 0) counts.failed = 1;
  const skipped = counts.skipped > 0 ? `, ${counts.skipped} skipped` : "";
  console.log(`tests: ${counts.passed} passed, ${counts.failed} failed${skipped}`);
  Deno.exit(status.success && counts.failed === 0 ? 0 : 1);
}
