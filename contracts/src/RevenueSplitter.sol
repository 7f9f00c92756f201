// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ReentrancyGuard} from "./ReentrancyGuard.sol";

/// @title RevenueSplitter
/// @notice Splits each payment for a dataset among that dataset's payees in proportion to their shares and
///         credits them; payees pull their balance with `withdraw`. Only the node sets payees and shares.
/// @dev Invariants: every `pay` credits exactly `msg.value` wei in total (no wei is created or lost), and
///      `totalOwed` equals the sum of `owed`, which the contract's balance always covers. Payees never receive
///      ether during `pay`, so a payee that rejects ether cannot block payments (pull, not push).
contract RevenueSplitter is ReentrancyGuard {
    /// @notice Upper bound on payees per dataset, so `pay` has bounded gas.
    uint256 public constant MAX_PAYEES = 32;
    /// @notice Upper bound on the sum of a dataset's shares, so `msg.value * share` cannot overflow in practice.
    uint256 public constant MAX_TOTAL_SHARES = type(uint64).max;

    struct Split {
        address[] payees;
        uint256[] shares;
        uint256 totalShares;
    }

    /// @notice The only address allowed to set payees (the node's account), fixed at deployment.
    address public immutable manager;

    /// @notice Wei credited to each payee and not yet withdrawn.
    mapping(address => uint256) public owed;
    /// @notice Sum of `owed` over all payees, in wei.
    uint256 public totalOwed;

    mapping(bytes32 => Split) private _splits;

    /// @notice Future payments for `dataset` split among `payees` in proportion to `shares`.
    event PayeesSet(bytes32 indexed dataset, address[] payees, uint256[] shares);
    /// @notice `payer` paid `amount` wei for `dataset`; the matching `Credited` events sum to `amount`.
    event Paid(bytes32 indexed dataset, address indexed payer, uint256 amount);
    /// @notice `payee` was credited `amount` wei (> 0) out of a payment for `dataset`.
    event Credited(bytes32 indexed dataset, address indexed payee, uint256 amount);
    /// @notice `payee` withdrew `amount` wei.
    event Withdrawn(address indexed payee, uint256 amount);

    /// @param node The node's account; the only one that may call `setPayees`.
    constructor(address node) {
        require(node != address(0), "RevenueSplitter: zero manager");
        manager = node;
    }

    /// @notice Replaces the payees and shares of `dataset`; balances already credited are unaffected.
    /// @dev Reverts on mismatched lengths, no payees or more than `MAX_PAYEES`, a zero or duplicate payee, a zero
    ///      share, or shares summing above `MAX_TOTAL_SHARES`.
    function setPayees(bytes32 dataset, address[] calldata payees, uint256[] calldata shares) external {
        require(msg.sender == manager, "RevenueSplitter: caller is not the manager");
        uint256 n = payees.length;
        require(n == shares.length, "RevenueSplitter: length mismatch");
        require(n > 0 && n <= MAX_PAYEES, "RevenueSplitter: bad payee count");
        uint256 total;
        for (uint256 i; i < n; ++i) {
            require(payees[i] != address(0), "RevenueSplitter: zero payee");
            require(shares[i] > 0, "RevenueSplitter: zero share");
            for (uint256 j; j < i; ++j) {
                require(payees[j] != payees[i], "RevenueSplitter: duplicate payee");
            }
            total += shares[i];
        }
        require(total <= MAX_TOTAL_SHARES, "RevenueSplitter: shares too large");
        _splits[dataset] = Split(payees, shares, total);
        emit PayeesSet(dataset, payees, shares);
    }

    /// @notice Splits `msg.value` among the payees of `dataset` and credits them.
    /// @dev Largest-remainder rounding: each payee first gets `floor(msg.value * share / totalShares)`; the few
    ///      wei left over (fewer than the number of payees) go one each to the payees with the largest discarded
    ///      fractions, ties to the lower index. The credited amounts therefore sum exactly to `msg.value`, and the
    ///      result depends only on the value and the split, never on the caller or the block.
    function pay(bytes32 dataset) external payable nonReentrant {
        Split storage s = _splits[dataset];
        uint256 n = s.payees.length;
        require(n > 0, "RevenueSplitter: no payees");
        require(msg.value > 0, "RevenueSplitter: zero payment");
        uint256 total = s.totalShares;
        uint256[] memory amounts = new uint256[](n);
        uint256[] memory fractions = new uint256[](n);
        uint256 assigned;
        for (uint256 i; i < n; ++i) {
            uint256 product = msg.value * s.shares[i];
            amounts[i] = product / total;
            fractions[i] = product % total;
            assigned += amounts[i];
        }
        // The fractions sum to `total * left` and each is below `total`, so more than `left` of them are
        // positive: every leftover wei goes to a payee whose share was actually rounded down.
        for (uint256 left = msg.value - assigned; left > 0; --left) {
            uint256 best;
            for (uint256 i = 1; i < n; ++i) {
                if (fractions[i] > fractions[best]) best = i;
            }
            amounts[best] += 1;
            fractions[best] = 0;
        }
        for (uint256 i; i < n; ++i) {
            if (amounts[i] > 0) {
                owed[s.payees[i]] += amounts[i];
                emit Credited(dataset, s.payees[i], amounts[i]);
            }
        }
        totalOwed += msg.value;
        emit Paid(dataset, msg.sender, msg.value);
    }

    /// @notice Sends the caller everything credited to it. Reverts if nothing is owed or the transfer fails.
    /// @dev Checks-effects-interactions plus `nonReentrant`: the balance is zeroed before the external call, and
    ///      any re-entry into `pay` or `withdraw` during that call reverts.
    function withdraw() external nonReentrant {
        uint256 amount = owed[msg.sender];
        require(amount > 0, "RevenueSplitter: nothing owed");
        owed[msg.sender] = 0;
        totalOwed -= amount;
        emit Withdrawn(msg.sender, amount);
        (bool ok, ) = payable(msg.sender).call{value: amount}("");
        require(ok, "RevenueSplitter: transfer failed");
    }

    /// @notice The payees and shares of `dataset`; empty arrays if none were set.
    function payeesOf(bytes32 dataset) external view returns (address[] memory payees, uint256[] memory shares) {
        Split storage s = _splits[dataset];
        return (s.payees, s.shares);
    }
}
