"""Settlement: split a price among contributors in whole fen that sum to the price exactly.

Largest-remainder (Hamilton) apportionment: contributor ``i`` with weight ``wᵢ`` is owed exactly
``qᵢ = price · wᵢ / Σw`` fen; each first gets ``⌊qᵢ⌋``, then the ``price − Σ⌊qᵢ⌋`` fen left over go one each to
the largest remainders ``qᵢ − ⌊qᵢ⌋``, ties broken by contributor id (ascending, code-point order). All arithmetic
is in :class:`fractions.Fraction`. Guarantees: payouts sum to ``price``; each payout is ``⌊qᵢ⌋`` or ``⌊qᵢ⌋ + 1``
(within one fen of the exact share); a larger weight never gets less; a zero weight gets nothing. Like every
quota method, Hamilton's can show the Alabama paradox (a larger price can lower one payout by a fen); payouts are
monotone in the share, not in the price.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction

from pricing.tariff import Fen, PricingError, _parse_int

__all__ = ["settle"]

_MAX_CONTRIBUTORS = 100_000


def settle(price: Fen, shares: Mapping[str, Fraction | int]) -> dict[str, Fen]:
    """Payouts in fen per contributor id (in id order) for a sale of ``price`` fen split by ``shares``: non-negative
    exact weights (``Fraction`` or ``int``, not float) with a positive total; they need not sum to 1."""
    total_fen = _parse_int(price, "price (fen)", "invalid_shares")
    if not isinstance(shares, Mapping) or not 1 <= len(shares) <= _MAX_CONTRIBUTORS:
        raise PricingError("shares name 1 to 100000 contributors", "invalid_shares")
    weights: dict[str, Fraction] = {}
    for who, weight in shares.items():
        if not isinstance(who, str) or not who:
            raise PricingError("contributor ids are non-empty strings", "invalid_shares")
        if isinstance(weight, bool) or not isinstance(weight, (int, Fraction)):
            raise PricingError("shares are exact numbers (Fraction or int)", "invalid_shares")
        if weight < 0:
            raise PricingError("shares must not be negative", "invalid_shares")
        weights[who] = Fraction(weight)
    total_weight = sum(weights.values(), Fraction(0))
    if total_weight == 0:
        raise PricingError("shares must not all be zero", "invalid_shares")
    payouts: dict[str, int] = {}
    remainders: list[tuple[Fraction, str]] = []
    for who, weight in weights.items():
        exact = total_fen * weight / total_weight
        whole = exact.numerator // exact.denominator
        payouts[who] = whole
        remainders.append((exact - whole, who))
    left = total_fen - sum(payouts.values())
    # Largest remainder first; among equal remainders the smaller id first. ``left`` < the number of non-zero
    # remainders (they sum to ``left`` and each is < 1), so a zero remainder is never topped up.
    remainders.sort(key=lambda item: (-item[0], item[1]))
    for _, who in remainders[:left]:
        payouts[who] += 1
    return {who: Fen(payouts[who]) for who in sorted(payouts)}
