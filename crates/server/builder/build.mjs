// esbuild of the builder: src/main.jsx → <out>/builder.js, builder-lazy.js (loaded by it),
// builder-*.js (what both share) and builder.css; minified ES modules.
// `console:api` is the console's own api.js, loaded at run time beside the bundle (assets/).
// style-mod (CodeMirror's styles) is patched to use a constructed stylesheet in the document
// too, never a <style> element, which the console's Content-Security-Policy (style-src 'self')
// refuses.
import { build } from 'esbuild';
import { readFile } from 'node:fs/promises';

const out = process.argv[2];
if (!out) throw new Error('usage: node build.mjs <output directory>');

const consoleApi = {
  name: 'console-api',
  setup(b) {
    b.onResolve({ filter: /^console:api$/ }, () => ({ path: './api.js', external: true }));
  },
};

const STYLE_MOD_FROM = 'if (!root.head && root.adoptedStyleSheets && win.CSSStyleSheet) {';
const STYLE_MOD_TO = 'if (root.adoptedStyleSheets && win.CSSStyleSheet) {';
const styleMod = {
  name: 'style-mod-adopted',
  setup(b) {
    b.onLoad({ filter: /style-mod[\\/]src[\\/]style-mod\.js$/ }, async (args) => {
      const src = await readFile(args.path, 'utf8');
      if (!src.includes(STYLE_MOD_FROM)) throw new Error(`style-mod changed: ${args.path} no longer has the line build.mjs patches`);
      return { contents: src.replace(STYLE_MOD_FROM, STYLE_MOD_TO), loader: 'js' };
    });
  },
};

await build({
  entryPoints: { builder: 'src/main.jsx' },
  outdir: out,
  bundle: true,
  // the lazy part (lazy.js: the YAML library, the text edits, CodeMirror) is its own file,
  // named without a hash so that the binary's list of files stays the same
  splitting: true,
  chunkNames: 'builder-[name]',
  format: 'esm',
  minify: true,
  target: ['es2022', 'chrome110', 'firefox115', 'safari16'],
  jsx: 'automatic',
  define: { 'process.env.NODE_ENV': '"production"' },
  legalComments: 'eof',
  charset: 'utf8',
  logLevel: 'warning',
  plugins: [consoleApi, styleMod],
});
