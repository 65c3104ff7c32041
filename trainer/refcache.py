"""On-disk cache of sequence-level reference log-probs.

Keyed by (dataset fingerprint, reference model hash, max length, truncation mode): N candidates trained on the
same data against the same reference pay for the reference forward pass once. Entries are written atomically, so
concurrent workers may share one cache folder."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from datasets import Dataset


def dataset_fingerprint(dataset: Dataset) -> str:
    """Hash of the tokenized pairs (prompt, chosen and rejected token ids), independent of row order."""
    digest = hashlib.sha256()
    for column in ("prompt_ids", "chosen_ids", "rejected_ids"):
        digest.update(column.encode())
        for ids in dataset[column]:
            digest.update(len(ids).to_bytes(4, "little"))
            digest.update(b"".join(int(t).to_bytes(4, "little", signed=True) for t in ids))
    return digest.hexdigest()[:32]


@dataclass(frozen=True)
class CacheKey:
    dataset: str
    model: str
    max_length: int | None
    truncation_mode: str

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:32]


class ReferenceCache:
    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def _path(self, key: CacheKey) -> Path:
        return self.root / f"{key.digest}.pt"

    def load(self, key: CacheKey, rows: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        path = self._path(key)
        if not path.exists():
            return None
        entry = torch.load(path, map_location="cpu", weights_only=True)
        if entry["chosen"].shape != (rows,) or entry["rejected"].shape != (rows,):
            return None
        return entry["chosen"], entry["rejected"]

    def store(self, key: CacheKey, chosen: torch.Tensor, rejected: torch.Tensor) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        path = self._path(key)
        fd, scratch = tempfile.mkstemp(dir=self.root, suffix=".tmp")
        os.close(fd)
        torch.save(
            {"chosen": chosen.float().cpu(), "rejected": rejected.float().cpu(), "key": asdict(key)}, scratch
        )
        os.replace(scratch, path)
        return path


def attach(dataset: Dataset, chosen: torch.Tensor, rejected: torch.Tensor) -> Dataset:
    """The dataset with ``ref_chosen_logps``/``ref_rejected_logps`` columns, as TRL's collator expects."""
    dataset = dataset.remove_columns(
        [c for c in ("ref_chosen_logps", "ref_rejected_logps") if c in dataset.column_names]
    )
    return dataset.add_column("ref_chosen_logps", chosen.tolist()).add_column(
        "ref_rejected_logps", rejected.tolist()
    )
