// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title LedgerAnchor
/// @notice Public record of a dsnode ledger's signed tree heads: the node anchors `(treeSize, root)` and the
///         sizes it anchors strictly grow, so a node that rewrote its history cannot anchor a root for a size it
///         already anchored. Anyone holding the log checks each anchored root with a consistency proof.
/// @dev `root` is the RFC 6962 Merkle tree hash of the first `treeSize` ledger entries, as the node computes it;
///      this contract never interprets it.
contract LedgerAnchor {
    /// @notice The only address allowed to anchor (the node's account), fixed at deployment.
    address public immutable anchorer;

    /// @notice Size of the most recent anchor; 0 before the first one.
    uint64 public latestSize;
    /// @notice Block timestamp (seconds since the Unix epoch) of the most recent anchor; 0 before the first one.
    uint64 public latestTimestamp;
    mapping(uint64 => bytes32) private _roots;

    /// @notice A root was anchored for `treeSize` entries at block time `timestamp` (seconds).
    event Anchored(uint64 treeSize, bytes32 root, uint256 timestamp);

    /// @param node The node's account; the only one that may call `anchor`.
    constructor(address node) {
        require(node != address(0), "LedgerAnchor: zero anchorer");
        anchorer = node;
    }

    /// @notice Records `root` as the tree hash of the first `treeSize` entries.
    /// @dev Reverts unless the caller is `anchorer`, `treeSize` exceeds `latestSize` (so also unless it is
    ///      positive) and `root` is non-zero (zero means "no anchor" in `rootAt`).
    function anchor(uint64 treeSize, bytes32 root) external {
        require(msg.sender == anchorer, "LedgerAnchor: caller is not the anchorer");
        require(treeSize > latestSize, "LedgerAnchor: tree size must grow");
        require(root != bytes32(0), "LedgerAnchor: zero root");
        _roots[treeSize] = root;
        latestSize = treeSize;
        latestTimestamp = uint64(block.timestamp);
        emit Anchored(treeSize, root, block.timestamp);
    }

    /// @notice The root anchored for exactly `treeSize` entries, or zero if none was.
    function rootAt(uint64 treeSize) external view returns (bytes32) {
        return _roots[treeSize];
    }

    /// @notice Root of the most recent anchor; zero before the first one.
    /// @dev Read from the size-to-root map rather than stored twice, which saves a storage write per anchor.
    function latestRoot() public view returns (bytes32) {
        return _roots[latestSize];
    }

    /// @notice The most recent anchor: `(treeSize, root, timestamp)`, all zero before the first one.
    function latest() external view returns (uint64 treeSize, bytes32 root, uint64 timestamp) {
        return (latestSize, latestRoot(), latestTimestamp);
    }
}
