// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title LicenseRegistry
/// @notice Public mirror of the licences a dsnode node grants: who bought which dataset until when, and whether
///         the licence was revoked. Only the node writes; anyone reads.
/// @dev A licence is keyed by `licenseHash`, the hash the node computes over its licence document; the contract
///      never sees the document. A key is registered at most once and revoked at most once, so the event log is a
///      complete, replayable history.
contract LicenseRegistry {
    /// @notice One licence. `expiresAt` is a Unix time in seconds; `buyer` is never zero once registered.
    struct License {
        bytes32 dataset;
        address buyer;
        uint64 expiresAt;
        bool revoked;
    }

    /// @notice The only address allowed to register and revoke (the node's account), fixed at deployment.
    address public immutable registrar;

    mapping(bytes32 => License) private _licenses;

    /// @notice `buyer` was granted `dataset` until `expiresAt` (seconds) under `licenseHash`.
    event Registered(bytes32 indexed licenseHash, bytes32 indexed dataset, address indexed buyer, uint64 expiresAt);
    /// @notice The licence `licenseHash` was revoked at block time `timestamp` (seconds).
    event Revoked(bytes32 indexed licenseHash, uint256 timestamp);

    /// @param node The node's account; the only one that may call `register` and `revoke`.
    constructor(address node) {
        require(node != address(0), "LicenseRegistry: zero registrar");
        registrar = node;
    }

    modifier onlyRegistrar() {
        require(msg.sender == registrar, "LicenseRegistry: caller is not the registrar");
        _;
    }

    /// @notice Records a licence. Reverts if `licenseHash` is zero or already registered, or `buyer` is zero.
    /// @dev An `expiresAt` in the past is accepted: the node may mirror a licence after the fact.
    function register(bytes32 licenseHash, bytes32 dataset, address buyer, uint64 expiresAt) external onlyRegistrar {
        require(licenseHash != bytes32(0), "LicenseRegistry: zero licence hash");
        require(buyer != address(0), "LicenseRegistry: zero buyer");
        require(_licenses[licenseHash].buyer == address(0), "LicenseRegistry: already registered");
        _licenses[licenseHash] = License(dataset, buyer, expiresAt, false);
        emit Registered(licenseHash, dataset, buyer, expiresAt);
    }

    /// @notice Revokes a registered licence. Reverts if it is unknown or already revoked.
    function revoke(bytes32 licenseHash) external onlyRegistrar {
        License storage lic = _licenses[licenseHash];
        require(lic.buyer != address(0), "LicenseRegistry: unknown licence");
        require(!lic.revoked, "LicenseRegistry: already revoked");
        lic.revoked = true;
        emit Revoked(licenseHash, block.timestamp);
    }

    /// @notice The licence under `licenseHash`; all fields zero if none was registered.
    function licenseOf(bytes32 licenseHash) external view returns (License memory) {
        return _licenses[licenseHash];
    }

    /// @notice True iff the licence is registered, not revoked and `block.timestamp < expiresAt`.
    function isValid(bytes32 licenseHash) external view returns (bool) {
        License storage lic = _licenses[licenseHash];
        return lic.buyer != address(0) && !lic.revoked && block.timestamp < lic.expiresAt;
    }
}
