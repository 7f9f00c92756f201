// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title ReentrancyGuard
/// @notice Rejects a call into any `nonReentrant` function while another one is still running.
/// @dev Plain storage rather than EIP-1153 transient storage, so the bytecode runs on pre-Cancun chains
///      (see contracts/README.md). The flag is reset to 1, not 0, so each guarded call pays for a warm
///      non-zero write instead of a fresh zero-to-non-zero one.
abstract contract ReentrancyGuard {
    uint256 private constant _NOT_ENTERED = 1;
    uint256 private constant _ENTERED = 2;
    uint256 private _status = _NOT_ENTERED;

    modifier nonReentrant() {
        require(_status == _NOT_ENTERED, "ReentrancyGuard: reentrant call");
        _status = _ENTERED;
        _;
        _status = _NOT_ENTERED;
    }
}
