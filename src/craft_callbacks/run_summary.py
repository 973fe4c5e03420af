"""The one line a run ends with: what was recorded, where, what was dropped and why, where values are."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from craft_callbacks.delivery.destination import Destination
from craft_callbacks.series import Series


def summary_line(
    destination: Destination,
    series: Iterable[Series],
    scalars: int,
    dropped: Mapping[str, Mapping[str, int]],
    cap: int,
    whereabouts: str | None,
) -> str:
    """``craft_callbacks: run R -> D: 3 list metrics (3,000 values), 3 scalars; nothing dropped; ...``."""
    seen = [s for s in series if s.thinner.seen]
    kept = sum(s.thinner.kept for s in seen)
    thinned = sum(s.thinner.thinned for s in seen)
    parts = [
        f"craft_callbacks: run {destination.execution_id} -> {destination.description}: "
        f"{len(seen)} list metrics ({kept:,} values), {scalars} scalars"
    ]
    lost = []
    for why, per_name in dropped.items():
        if per_name:
            names = ", ".join(sorted(per_name)[:5]) + (", ..." if len(per_name) > 5 else "")
            lost.append(f"{sum(per_name.values()):,} {why} ({names})")
    if thinned:
        lost.append(f"{thinned:,} thinned to stay under {cap:,} values per list")
    replayed = getattr(destination, "replayed", 0)
    if replayed:
        parts.append(f"; resumed: {replayed:,} values of steps recorded before the restart kept once")
    if destination.rejected:
        lost.append(
            f"{destination.rejected_values:,} refused by the sink ({', '.join(sorted(destination.rejected))})"
        )
    parts.append("; dropped " + ", ".join(lost) if lost else "; nothing dropped")
    if whereabouts:
        parts.append(f"; {whereabouts}")
    return "".join(parts)
