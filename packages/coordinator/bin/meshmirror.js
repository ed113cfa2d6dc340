#!/usr/bin/env node
// The `meshmirror` bin. The sources are TypeScript run by Node's type stripping, which needs Node 24;
// `pnpm meshmirror` at the repository root runs the pinned Node 24 with the memory flags we measure with.
const [major] = process.versions.node.split('.').map(Number);
if (major < 24) {
  process.stderr.write(`meshmirror: needs Node.js 24 or newer (this is ${process.version}); run it as \`npx -y pnpm@10 meshmirror …\` from the repository\n`);
  process.exit(2);
}
await import('../src/cli/main.ts');
