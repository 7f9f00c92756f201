"""Quality grades, arbitrage-free prices and contribution shares: pure library (no framework imports).

- :mod:`pricing.quality` / :mod:`pricing.profile` — the out-of-core quality profile and grade A–E;
- :mod:`pricing.tariff` / :mod:`pricing.price` / :mod:`pricing.scarcity` — factors, prices in fen rounded up,
  history-aware charges, quotes anyone can recompute;
- :mod:`pricing.contribution` / :mod:`pricing.shapley` / :mod:`pricing.settlement` — contribution shares (volume,
  annotation, exact KNN-Shapley value) and payouts that sum exactly to the price.
"""

from pricing.price import Listing, Quote, Terms, make_quote, price_basis, recompute
from pricing.settlement import settle
from pricing.tariff import DEFAULT_TARIFF, Fen, PricingError, Tariff

__all__ = ["DEFAULT_TARIFF", "Fen", "Listing", "PricingError", "Quote", "Tariff", "Terms", "make_quote",
           "price_basis", "recompute", "settle"]
