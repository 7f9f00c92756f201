"""Privacy before data leaves: pure functions on plain values and Arrow data (no framework imports).

- :mod:`privacy.pii` — PII detection (Chinese and common formats, validated) and the residual scan of outputs;
- :mod:`privacy.policy` — release policies (column roles and transforms, ``k``), proposals, loosening checks;
- :mod:`privacy.transform` — vectorized drop / mask / keyed pseudonyms / generalization;
- :mod:`privacy.kanon` — k-anonymity by suppression, an independent check, re-identification risk;
- :mod:`privacy.budget` — ε and δ in exact integer units;
- :mod:`privacy.dp` — DP count / sum / mean / histogram through OpenDP's samplers;
- :mod:`privacy.model` — DP-SGD training through Opacus (imports torch: import it explicitly, it is not loaded
  here).
"""

from privacy.checksums import resident_id_check_digit, valid_resident_id

__all__ = ["resident_id_check_digit", "valid_resident_id"]
