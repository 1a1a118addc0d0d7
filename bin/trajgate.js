#!/usr/bin/env node
// The `trajgate` command. In a checkout (sources present, dev dependencies installed) it runs the TypeScript
// sources through tsx, so `npm ci && npx trajgate` works with nothing built; in an installed package or the
// Docker image it runs the compiled dist/.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const sources = new URL('../src/cli/main.ts', import.meta.url);
const compiled = new URL('../dist/cli/main.js', import.meta.url);

if (existsSync(sources) && (await tsxAvailable())) {
  const { register } = await import('tsx/esm/api');
  register({ tsconfig: fileURLToPath(new URL('../tsconfig.json', import.meta.url)) });
  await import(sources.href);
} else if (existsSync(compiled)) {
  await import(compiled.href);
} else {
  process.stderr.write('trajgate: neither the sources with tsx nor a build were found; run `npm run build`\n');
  process.exit(2);
}

async function tsxAvailable() {
  try {
    await import('tsx/esm/api');
    return true;
  } catch {
    return false;
  }
}
