// Validates an AsyncAPI document with the official parser (@asyncapi/parser): prints every
// diagnostic and exits 1 when any is an error. Usage: node asyncapi-validate.cjs FILE
// (tests/contracts/check.sh installs the parser under /var/cache/kizuna and sets NODE_PATH).
'use strict';
const { Parser, fromFile, DiagnosticSeverity } = require('@asyncapi/parser');

async function main() {
  const file = process.argv[2];
  if (!file) {
    console.error('usage: node asyncapi-validate.cjs FILE');
    process.exit(2);
  }
  const parser = new Parser();
  const { document, diagnostics } = await fromFile(parser, file).parse();
  const severity = ['error', 'warning', 'info', 'hint'];
  for (const d of diagnostics) {
    console.error(`${severity[d.severity] || d.severity} ${d.code} at /${d.path.join('/')}: ${d.message}`);
  }
  const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
  if (!document || errors.length > 0) {
    console.error(`${file}: ${errors.length} error(s)`);
    process.exit(1);
  }
  const channels = document.channels().length;
  const messages = document.allMessages().length;
  console.error(`${file}: valid AsyncAPI ${document.version()} (${channels} channels, ${messages} messages, ${diagnostics.length} non-error diagnostics)`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
