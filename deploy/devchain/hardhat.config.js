// Minimal Hardhat 2 config: only the in-process EDR dev chain is used (no Solidity sources, so no solc download).
module.exports = {
  paths: { sources: "./no-sources" },
  networks: {
    hardhat: {
      chainId: 1337,
      hardfork: "cancun",           // runs paris bytecode fine
      mining: { auto: true, interval: 0 },
      throwOnTransactionFailures: false, // reverted tx: mined with status 0, no JSON-RPC error (geth-like)
      throwOnCallFailures: true,
      // default deterministic accounts: mnemonic "test test ... junk", 10000 ETH each
    },
  },
};
