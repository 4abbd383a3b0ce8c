"""Statistics of success rates and paired comparisons, shared by the experiments.

* `wilson_interval`: the 95 % Wilson score interval of a success rate (good at small n and
  at rates near 0 or 1, where the normal approximation is not).
* `mcnemar_exact_p`: the exact two-sided McNemar test of a paired comparison: under "both
  policies are equally good", each discordant pair (only one policy succeeded on that scene)
  is a fair coin, so the p-value is a two-sided binomial test on those pairs.
* `paired_comparison`: both of the above's inputs from two per-episode outcome strings.
* `two_proportion_p`: the pooled two-proportion z test of two unpaired rates (e.g. the ROS
  and the in-process evaluation, which run on different scenes).
"""

from __future__ import annotations

import math


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a success rate; (0, 1) when there are no trials."""
    if n < 0 or not 0 <= successes <= max(n, 0):
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_exact_p(only_a: int, only_b: int) -> float:
    """Exact two-sided McNemar p-value from the discordant pair counts (1.0 when there are
    none): twice the smaller binomial tail of Bin(only_a + only_b, 1/2), capped at 1."""
    if only_a < 0 or only_b < 0:
        raise ValueError(f"discordant counts must be >= 0, got {only_a} and {only_b}")
    n, k = only_a + only_b, min(only_a, only_b)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_comparison(learned: str, scripted: str) -> dict:
    """Per-episode pairing of two outcome strings on the same scenes ("1" = success): episodes
    only one policy succeeded in, and the exact two-sided McNemar p-value on them."""
    if len(learned) != len(scripted):
        raise ValueError(f"outcome strings differ in length: {len(learned)} vs {len(scripted)}")
    only_learned = sum(a == "1" and b == "0" for a, b in zip(learned, scripted, strict=True))
    only_scripted = sum(a == "0" and b == "1" for a, b in zip(learned, scripted, strict=True))
    return {
        "only_learned": only_learned,
        "only_scripted": only_scripted,
        "mcnemar_p": round(mcnemar_exact_p(only_learned, only_scripted), 4),
    }


def two_proportion_p(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided p of the pooled two-proportion z test (1.0 when undefined)."""
    if not (n1 and n2):
        return 1.0
    pooled = (k1 + k2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0
    z = abs(k1 / n1 - k2 / n2) / se
    return math.erfc(z / math.sqrt(2))
