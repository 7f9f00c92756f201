// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

interface IRevenueSplitter {
    function withdraw() external;
}

/// @title ReentrantPayee
/// @notice Test-only attacker: a payee whose `receive` re-enters `withdraw` to try to be paid twice (the classic
///         reentrancy drain). It swallows the failing re-entry so the outer withdrawal can still complete, letting a
///         test check that the attacker got exactly its credit and no more. Never deploy outside tests.
contract ReentrantPayee {
    IRevenueSplitter public immutable splitter;
    /// @notice Re-entries attempted and re-entries that succeeded (the latter must stay 0).
    uint256 public attempts;
    uint256 public reentered;
    uint256 public constant MAX_ATTEMPTS = 3;

    constructor(address target) {
        splitter = IRevenueSplitter(target);
    }

    /// @notice Withdraws the attacker's credit, triggering the re-entry from `receive`.
    function attack() external {
        splitter.withdraw();
    }

    receive() external payable {
        if (attempts < MAX_ATTEMPTS) {
            ++attempts;
            try splitter.withdraw() {
                ++reentered;
            } catch {}
        }
    }
}
