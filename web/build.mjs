// Bundles the page with esbuild and copies the static files into dist/.
import { build } from 'esbuild';
import { cpSync, mkdirSync, rmSync } from 'node:fs';

rmSync('dist', { recursive: true, force: true }); // no file of an earlier build stays
mkdirSync('dist', { recursive: true });
await build({
  entryPoints: { app: 'src/main.js', device: 'src/device.js' },
  bundle: true,
  // ES modules split at the dynamic import of src/device.js: mediasoup-client is
  // its own file (device.js), preloaded by index.html and evaluated while the
  // server answers the join; what both files use goes in a shared chunk.
  format: 'esm',
  splitting: true,
  entryNames: '[name]',
  chunkNames: 'chunk-[hash]',
  target: ['es2020'],
  minify: true,
  sourcemap: true,
  outdir: 'dist',
  logLevel: 'warning',
});
cpSync('public', 'dist', { recursive: true });
console.log('web: built dist/app.js');
