"""What a result stands on that is not the real thing, read from summary.json (no dependencies: the engine's
final table uses it too)."""
from __future__ import annotations

from typing import Any

# summary.json keys (Task.provenance) and the values that mark a result computed on a stand-in
SUBSTITUTES = {"data": "synthetic", "train_split": "valid", "scores": "approximate"}


def substitute_notes(summary: dict[str, Any] | None) -> list[str]:
    """`data: synthetic`, `train_split: valid`, `scores: approximate` (empty for a normal run)."""
    return [f"{k}: {v}" for k, v in SUBSTITUTES.items() if (summary or {}).get(k) == v]
