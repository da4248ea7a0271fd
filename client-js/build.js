// Builds the browser client: dist/cometkit.js (UMD), dist/cometkit.min.js
// (UMD, minified: what the Go server embeds and serves), dist/cometkit.mjs
// (ES module). Fails if any output does not parse as ES3 or the minified
// bundle gzipped is over budget. Usage: node client-js/build.js
"use strict";
const fs = require("fs");
const path = require("path");
const zlib = require("zlib");
const acorn = require("acorn");
const { minify } = require("terser");

const BUDGET = 6 * 1024; // bytes, minified + gzip -9
const dir = __dirname;
const src = fs.readFileSync(path.join(dir, "src", "cometkit.js"), "utf8");

const umd =
  "(function (root, factory) {\n" +
  "  if (typeof define === \"function\" && define.amd) { define([], factory); }\n" +
  "  else if (typeof module === \"object\" && module.exports) { module.exports = factory(); }\n" +
  "  else { root.CometKit = factory(); }\n" +
  "}(this, function () {\n" + src + "\nreturn CometKit;\n}));\n";
const esm = src + "\nexport default CometKit;\n";

function checkES3(name, code) {
  try {
    acorn.parse(code, { ecmaVersion: 3, allowReserved: "never" });
  } catch (e) {
    throw new Error(name + " is not ES3: " + e.message);
  }
}

async function main() {
  checkES3("cometkit.js", umd);
  const min = await minify(umd, {
    ie8: true, // quote reserved property names, keep IE8's quirks safe
    // Without sequences, collapse_vars and join_vars the output is a
    // little longer and gzips 28 bytes smaller (measured on this source):
    // statements kept apart repeat more for gzip to find.
    compress: { passes: 2, sequences: false, collapse_vars: false, join_vars: false },
    mangle: true,
    format: { comments: false },
  });
  checkES3("cometkit.min.js", min.code);
  const dist = path.join(dir, "dist");
  fs.mkdirSync(dist, { recursive: true });
  fs.writeFileSync(path.join(dist, "cometkit.js"), umd);
  fs.writeFileSync(path.join(dist, "cometkit.min.js"), min.code + "\n");
  fs.writeFileSync(path.join(dist, "cometkit.mjs"), esm);
  const gz = zlib.gzipSync(min.code, { level: 9 }).length;
  console.log(`cometkit.min.js: ${min.code.length} bytes, ${gz} bytes gzipped (budget ${BUDGET})`);
  if (gz > BUDGET) {
    throw new Error(`over budget by ${gz - BUDGET} bytes`);
  }
}

main().catch((e) => {
  console.error("build failed: " + e.message);
  process.exit(1);
});
