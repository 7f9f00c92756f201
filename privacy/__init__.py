"""Privacy before data leaves: pure functions on plain values and Arrow data (no framework imports).

This issue ships the identifier checksums the sample data and later PII detection share.
"""

from privacy.checksums import resident_id_check_digit, valid_resident_id

__all__ = ["resident_id_check_digit", "valid_resident_id"]
