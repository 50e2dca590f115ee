// Bundles the page with esbuild and copies the static files into dist/.
import { build } from 'esbuild';
import { cpSync, mkdirSync } from 'node:fs';

mkdirSync('dist', { recursive: true });
await build({
  entryPoints: ['src/main.js'],
  bundle: true,
  format: 'iife',
  target: ['es2020'],
  minify: true,
  sourcemap: true,
  outfile: 'dist/app.js',
  logLevel: 'warning',
});
cpSync('public', 'dist', { recursive: true });
console.log('web: built dist/app.js');
