// SPDX-License-Identifier: Apache-2.0
// Deterministic build: compiles every .sol file under src/ with the pinned solcjs and writes one
// artifacts/<ContractName>.json per deployable contract. Same sources + same solc => same bytes.
//
// Usage: node contracts/build.js [outDir]   (outDir defaults to contracts/artifacts)
"use strict";

const fs = require("fs");
const path = require("path");
const solc = require("solc");

const ROOT = __dirname;
const SRC = path.join(ROOT, "src");
// Fixed settings; change them only together with the artifacts and contracts/README.md.
const EVM_VERSION = "paris";
const OPTIMIZER = { enabled: true, runs: 200 };

function fail(message) {
  process.stderr.write(`build.js: ${message}\n`);
  process.exit(1);
}

function checkPinnedCompiler() {
  const wanted = require(path.join(ROOT, "package.json")).dependencies.solc;
  const installed = require("solc/package.json").version;
  if (installed !== wanted) {
    fail(`solc ${installed} is installed but package.json pins ${wanted}; run npm ci --prefix contracts`);
  }
}

// Source units keyed by POSIX path relative to contracts/ (e.g. "src/LedgerAnchor.sol"), in sorted order, so
// neither the checkout location nor the directory listing order reaches the compiler.
function collectSources(dir) {
  const out = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...collectSources(full));
    else if (entry.name.endsWith(".sol")) out.push(full);
  }
  return out;
}

function standardInput() {
  const sources = {};
  for (const file of collectSources(SRC).sort()) {
    const key = path.relative(ROOT, file).split(path.sep).join("/");
    sources[key] = { content: fs.readFileSync(file, "utf8") };
  }
  return {
    language: "Solidity",
    sources,
    settings: {
      evmVersion: EVM_VERSION,
      optimizer: OPTIMIZER,
      // No IPFS/Swarm hash of the metadata in the bytecode: the CBOR trailer then holds only the solc version.
      metadata: { bytecodeHash: "none" },
      outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
    },
  };
}

// Sources import each other by relative path ("./X.sol"), which solc resolves itself; anything else is refused.
function findImports(importPath) {
  return { error: `import not found: ${importPath} (only relative imports inside src/ are allowed)` };
}

function main() {
  checkPinnedCompiler();
  const outDir = path.resolve(process.argv[2] || path.join(ROOT, "artifacts"));
  const output = JSON.parse(solc.compile(JSON.stringify(standardInput()), { import: findImports }));
  const diagnostics = output.errors || [];
  for (const d of diagnostics) process.stderr.write(`${d.formattedMessage || d.message}\n`);
  // Warnings fail the build too, as pytest's filterwarnings=error does on the Python side.
  if (diagnostics.length > 0) fail(`${diagnostics.length} compiler diagnostic(s)`);

  const artifacts = new Map();
  for (const sourceName of Object.keys(output.contracts).sort()) {
    for (const [name, c] of Object.entries(output.contracts[sourceName]).sort(([a], [b]) => (a < b ? -1 : 1))) {
      if (!c.evm.bytecode.object) continue; // abstract contracts and interfaces
      if (artifacts.has(name)) fail(`contract name ${name} is defined twice`);
      artifacts.set(name, {
        contractName: name,
        abi: c.abi,
        bytecode: `0x${c.evm.bytecode.object}`,
        deployedBytecode: `0x${c.evm.deployedBytecode.object}`,
        compiler: { version: solc.version(), evmVersion: EVM_VERSION, optimizer: OPTIMIZER },
      });
    }
  }

  fs.mkdirSync(outDir, { recursive: true });
  for (const stale of fs.readdirSync(outDir)) {
    if (stale.endsWith(".json")) fs.rmSync(path.join(outDir, stale));
  }
  for (const [name, artifact] of artifacts) {
    fs.writeFileSync(path.join(outDir, `${name}.json`), `${JSON.stringify(artifact, null, 2)}\n`);
  }
  process.stdout.write(`wrote ${artifacts.size} artifacts to ${outDir}\n`);
}

main();
