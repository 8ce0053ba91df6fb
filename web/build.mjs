// Bundles src/ into dist/: index.html, app.js and app.css (minified, no source maps, nothing external).
// `node build.mjs --watch` rebuilds on change.
import { build, context } from 'esbuild';
import { copyFile, mkdir, readFile, rm, stat } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';

const watch = process.argv.includes('--watch');
const out = new URL('./dist/', import.meta.url);
const src = new URL('./src/', import.meta.url);

const options = {
  entryPoints: [
    { in: new URL('main.ts', src).pathname, out: 'app' },
    { in: new URL('app.css', src).pathname, out: 'app' },
  ],
  outdir: out.pathname,
  bundle: true,
  minify: true,
  format: 'iife',
  target: ['es2022', 'chrome100', 'firefox100', 'safari15'],
  legalComments: 'none',
  charset: 'utf8',
  logLevel: 'warning',
};

await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });
await copyFile(new URL('index.html', src), new URL('index.html', out));
if (watch) {
  const ctx = await context(options);
  await ctx.watch();
  console.log('watching src/ …');
} else {
  await build(options);
  let raw = 0;
  let gz = 0;
  for (const f of ['index.html', 'app.js', 'app.css']) {
    const buf = await readFile(new URL(f, out));
    raw += (await stat(new URL(f, out))).size;
    gz += gzipSync(buf, { level: 9 }).length;
  }
  console.log(`dist/: index.html, app.js, app.css: ${(raw / 1024).toFixed(1)} KiB, ${(gz / 1024).toFixed(1)} KiB gzipped`);
}
