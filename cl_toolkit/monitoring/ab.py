"""`clt ab analyze`: champion against challenger (the router that splits traffic between
them is `cl_toolkit.serve.routing.route`).

The test: the pooled two-proportion z-test on the positive-feedback rate (effective
rating >= 4) of each arm's rated predictions, two-sided, with the unpooled (Wald)
confidence interval of the difference (challenger minus champion).

The weighted score: the challenger's relative change against the champion in mean quality
score (weight 0.5), positive rate (0.3) and mean latency (-0.2: slower counts against);
a metric that either arm lacks is left out.

The verdict:
- "need more data" while an arm has fewer than ab.min_samples_per_arm rated predictions,
  or the difference is not significant and the arms are smaller than the sample size
  needed to see ab.min_improvement with ab.power;
- "promote" when p < ab.alpha, the gain is >= ab.min_improvement and the score is > 0;
- "keep" otherwise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from cl_toolkit.monitoring.config import AB
from cl_toolkit.monitoring.stat_tests import sample_size_per_arm, two_proportion_ztest

VERDICTS = ("promote", "keep", "need more data")


@dataclass(frozen=True)
class Arm:
    version: str
    predictions: int
    rated: int
    positive: int
    mean_quality: float | None
    mean_latency_ms: float | None

    @property
    def positive_rate(self) -> float | None:
        return self.positive / self.rated if self.rated else None


def _relative(new: float | None, old: float | None) -> float | None:
    if new is None or old is None or old == 0:
        return None
    return (new - old) / abs(old)


def weighted_score(champion: Arm, challenger: Arm, cfg: AB) -> dict:
    """Each metric's relative change, its weight, and the weighted sum."""
    changes = {"quality": (_relative(challenger.mean_quality, champion.mean_quality), cfg.weight_quality),
               "positive_rate": (_relative(challenger.positive_rate, champion.positive_rate),
                                 cfg.weight_positive_rate),
               "latency": (_relative(challenger.mean_latency_ms, champion.mean_latency_ms), cfg.weight_latency)}
    parts = {k: {"relative_change": c, "weight": w} for k, (c, w) in changes.items()}
    score = sum(c * w for c, w in changes.values() if c is not None)
    return {"components": parts, "score": score}


@dataclass(frozen=True)
class ABResult:
    model: str | None
    champion: dict
    challenger: dict
    test: dict | None
    weighted: dict
    needed_per_arm: int
    still_needed: dict
    verdict: str
    reason: str

    def as_dict(self) -> dict:
        return asdict(self)


def _arm_dict(arm: Arm) -> dict:
    return {**asdict(arm), "positive_rate": arm.positive_rate}


def _verdict(champion: Arm, challenger: Arm, test, score: float, needed: int, cfg: AB) -> tuple[str, str]:
    smallest = min(champion.rated, challenger.rated)
    if smallest < cfg.min_samples_per_arm:
        return "need more data", f"{smallest} rated in the smaller arm; the minimum is {cfg.min_samples_per_arm}"
    significant = test.p_value < cfg.alpha
    gain = round(test.diff, 9)
    if significant and gain >= cfg.min_improvement and score > 0:
        return "promote", f"+{gain:.1%} positive rate (p={test.p_value:.2g}), weighted score {score:+.3f}"
    if significant:
        why = (f"weighted score {score:+.3f} is not positive" if gain >= cfg.min_improvement
               else f"difference {gain:+.1%} is below the minimum improvement {cfg.min_improvement:.0%}")
        return "keep", f"significant (p={test.p_value:.2g}) but {why}"
    if smallest < needed:
        return "need more data", (f"not significant (p={test.p_value:.2g}); {needed} rated per arm are "
                                  f"needed to see +{cfg.min_improvement:.0%} with power {cfg.power:.0%}")
    return "keep", f"no significant difference (p={test.p_value:.2g}) with {smallest} rated per arm"


def analyze(champion: Arm, challenger: Arm, cfg: AB, model: str | None = None) -> ABResult:
    """The z-test, the weighted score, the sample size still needed and the verdict."""
    test = None
    if champion.rated and challenger.rated:
        test = two_proportion_ztest(champion.positive, champion.rated, challenger.positive,
                                    challenger.rated, cfg.alpha)
    base_rate = champion.positive_rate if champion.positive_rate is not None else 0.5
    needed = max(cfg.min_samples_per_arm,
                 sample_size_per_arm(base_rate, cfg.min_improvement, cfg.alpha, cfg.power))
    weighted = weighted_score(champion, challenger, cfg)
    if test is None:
        verdict, reason = "need more data", "an arm has no rated predictions"
    else:
        verdict, reason = _verdict(champion, challenger, test, weighted["score"], needed, cfg)
    still = {"champion": max(0, needed - champion.rated), "challenger": max(0, needed - challenger.rated)}
    if verdict != "need more data":
        still = {"champion": 0, "challenger": 0}
    return ABResult(model, _arm_dict(champion), _arm_dict(challenger), asdict(test) if test else None,
                    weighted, needed, still, verdict, reason)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.1%}"


def format_ab(result: ABResult) -> list[str]:
    def arm_line(role: str, a: dict) -> str:
        rate = "-" if a["positive_rate"] is None else f"{a['positive_rate']:.1%}"
        quality = "-" if a["mean_quality"] is None else f"{a['mean_quality']:.3f}"
        latency = "-" if a["mean_latency_ms"] is None else f"{a['mean_latency_ms']:.0f} ms"
        return (f"  {role:<10} {a['version']:<10} rated {a['rated']:>7}  positive {rate:>6}  "
                f"quality {quality:>7}  latency {latency:>9}")

    title = f"A/B {result.model}" if result.model else "A/B"
    lines = [f"{title}: {result.verdict.upper()}  ({result.reason})",
             arm_line("champion", result.champion), arm_line("challenger", result.challenger)]
    t = result.test
    if t:
        lines.append(f"  difference {t['diff']:+.2%}  z={t['z']:.3f}  p={t['p_value']:.3g}  "
                     f"CI [{t['ci_low']:+.2%}, {t['ci_high']:+.2%}]")
    parts = [f"{k} {_pct(v['relative_change'])} x {v['weight']:g}"
             for k, v in result.weighted["components"].items()]
    lines.append(f"  weighted score {result.weighted['score']:+.4f}  ({', '.join(parts)})")
    if result.verdict == "need more data":
        lines.append(f"  still needed: champion {result.still_needed['champion']}, "
                     f"challenger {result.still_needed['challenger']} rated predictions "
                     f"({result.needed_per_arm} per arm)")
    return lines


EMPTY_ARM = {"predictions": 0, "rated": 0, "positive": 0, "mean_quality": None, "mean_latency_ms": None}


def arms_of(rows: dict[str, dict], versions: list[str]) -> list[Arm]:
    """An Arm per version from arm_rows (a version without predictions is an empty arm)."""
    return [Arm(v, **rows.get(v, EMPTY_ARM)) for v in versions]


def with_overrides(cfg: AB, min_samples: int | None = None, min_improvement: float | None = None) -> AB:
    """The A/B policy with the command line's thresholds, where given."""
    return replace(cfg, min_samples_per_arm=min_samples or cfg.min_samples_per_arm,
                   min_improvement=cfg.min_improvement if min_improvement is None else min_improvement)
