"""Deterministic, resumable batches from an on-disk (Arrow) dataset.

Every batch is a pure function of (seed, epoch, batch index, rank): the epoch's order is a seeded
permutation, and each sample's random choices (masking) come from a generator seeded by
(seed, epoch, sample index). So a resumed run sees exactly the batches it would have seen, worker
processes change nothing, and a sample is masked the same whether it sits in one batch of 8 or two
accumulated batches of 4, in one process or in two.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from uer.errors import UerError

Collate = Callable[[dict[str, list], list[np.random.Generator]], dict[str, torch.Tensor]]
SEED_LIMIT = 2**32
"""Seeds are in ``[0, SEED_LIMIT)``: what ``numpy.random.seed`` and the seeds torch gives loader
workers accept, and small enough that ``seed · 1_000_003 + epoch`` fits a torch generator."""


def check_loader_options(data_cfg) -> None:
    """Raise :class:`UerError` naming the key for a loader option of the ``data`` config section
    that no run can use: ``batch_size`` < 1, ``eval_samples`` or ``num_workers`` < 0, or a ``seed``
    outside ``[0, 2**32)`` (each must be an integer)."""
    ranges = {"batch_size": (1, None), "eval_samples": (0, None), "num_workers": (0, None), "seed": (0, SEED_LIMIT)}
    for key, (low, high) in ranges.items():
        value = data_cfg.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (high and value >= high):
            rule = f"an integer >= {low}" + (f" and < 2**{high.bit_length() - 1}" if high else "")
            raise UerError(f"data.{key}={value}: must be {rule}")


def split_indices(num_rows: int, eval_samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded split of ``range(num_rows)`` into (train, eval) index arrays; eval gets
    ``min(eval_samples, num_rows // 10)`` rows so training keeps at least 90%.

    Raises:
        ValueError: a negative ``eval_samples`` (which would otherwise swap the two splits).
    """
    if eval_samples < 0:
        raise ValueError(f"eval_samples={eval_samples}: must be >= 0")
    order = np.random.default_rng([seed, 0x5EED]).permutation(num_rows)
    n_eval = min(eval_samples, num_rows // 10)
    return np.sort(order[n_eval:]), np.sort(order[:n_eval])


class _Batches(Dataset):
    """Map-style view of one epoch's batches (so torch's DataLoader workers can build them)."""

    def __init__(self, rows, collate: Collate, plan: list[np.ndarray], seed: int, epoch: int):
        self.rows, self.collate, self.plan, self.seed, self.epoch = rows, collate, plan, seed, epoch

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        indices = self.plan[i]
        rngs = [np.random.default_rng([self.seed, self.epoch, int(j)]) for j in indices]
        return self.collate(self.rows[[int(j) for j in indices]], rngs)


class BatchLoader:
    """Infinite iterator over batches, epoch after epoch, with a saveable position.

    Args:
        rows: anything indexable by a list of ints returning a dict of columns (a ``datasets.Dataset``).
        indices: (N,) the row ids this loader draws from (e.g. the training split).
        collate: ``collate(columns, rngs) -> batch``, one rng per row.
        batch_size: rows per batch on this rank.
        seed: seeds the order and the per-sample randomness.
        shuffle: reshuffle each epoch; otherwise keep ``indices`` order (evaluation).
        drop_last: drop the final incomplete global batch of an epoch.
        rank, world_size: this process's share of each global batch of ``batch_size·world_size`` rows.
        num_workers, pin_memory: passed to ``torch.utils.data.DataLoader``.

    Raises:
        ValueError: fewer rows than one global batch when ``drop_last``.
    """

    def __init__(self, rows, indices: np.ndarray, collate: Collate, batch_size: int, seed: int = 0,
                 shuffle: bool = True, drop_last: bool = True, rank: int = 0, world_size: int = 1,
                 num_workers: int = 0, pin_memory: bool = False):
        self.rows, self.indices, self.collate = rows, np.asarray(indices), collate
        self.batch_size, self.seed, self.shuffle, self.drop_last = batch_size, seed, shuffle, drop_last
        self.rank, self.world_size = rank, world_size
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.epoch, self.position = 0, 0
        if drop_last and len(self.indices) < batch_size * world_size:
            raise ValueError(f"{len(self.indices)} rows are fewer than one batch of {batch_size * world_size}")

    def __len__(self) -> int:
        """Batches per epoch."""
        global_batch = self.batch_size * self.world_size
        n = len(self.indices)
        return n // global_batch if self.drop_last else -(-n // global_batch)

    def plan(self, epoch: int) -> list[np.ndarray]:
        """This rank's row ids for every batch of ``epoch``: global batch ``b`` is rows
        ``[b·G, (b+1)·G)`` of the epoch's order (G = ``batch_size·world_size``), and rank ``r`` takes
        its ``r``-th slice. With ``drop_last=False`` the final, shorter global batch is split evenly
        (shares differ by at most one row), and a rank whose share is empty gets a filler (see
        :meth:`last_is_filler`), so every rank has ``len(self)`` batches: collectives inside the
        model (FSDP2) run the same number of times on every rank."""
        order = self.indices
        if self.shuffle:
            order = order[np.random.default_rng([self.seed, epoch]).permutation(len(order))]
        global_batch = self.batch_size * self.world_size
        batches = []
        for b in range(len(self)):
            chunk = order[b * global_batch:(b + 1) * global_batch]
            if len(chunk) == global_batch:
                batches.append(chunk[self.rank * self.batch_size:(self.rank + 1) * self.batch_size])
            else:
                mine = np.array_split(chunk, self.world_size)[self.rank]
                batches.append(mine if len(mine) else chunk[:1])
        return batches

    def last_is_filler(self) -> bool:
        """True when this rank's last batch of each epoch is a filler (a row of another rank, to be
        computed but not counted): the final global batch has fewer rows than there are ranks."""
        tail = len(self.indices) % (self.batch_size * self.world_size)
        return not self.drop_last and 0 < tail <= self.rank

    def epoch_batches(self, epoch: int, start: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        """The batches of one epoch from batch ``start`` on (does not move the saved position)."""
        view = _Batches(self.rows, self.collate, self.plan(epoch)[start:], self.seed, epoch)
        # an own generator, so starting an epoch does not draw from the global RNG (dropout's)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        yield from DataLoader(view, batch_size=None, shuffle=False, num_workers=self.num_workers,
                              pin_memory=self.pin_memory, generator=generator)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        while True:
            for batch in self.epoch_batches(self.epoch, self.position):
                self.position += 1
                yield batch
            self.epoch, self.position = self.epoch + 1, 0

    def state_dict(self) -> dict[str, int]:
        """Position to resume from: the epoch and how many of its global batches were consumed
        (``samples``: rows of the epoch's order consumed by all ranks together). Every rank is at
        the same position, since a batch is a pure function of (seed, epoch, index, rank); so one
        state describes every rank, and a run resumed with another number of processes but the same
        global batch (``batch_size·world_size``) continues at the same global sample."""
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed,
                "world_size": self.world_size, "batch_size": self.batch_size,
                "samples": self.position * self.batch_size * self.world_size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from a :meth:`state_dict`.

        Raises:
            ValueError: the saved position was made with another seed or global batch size, so the
                same samples cannot be replayed (another world size is fine).
        """
        saved = state["batch_size"] * state["world_size"]
        if state["seed"] != self.seed or saved != self.batch_size * self.world_size:
            raise ValueError(f"data position was saved with seed {state['seed']} and global batch {saved}; "
                             f"this run has seed {self.seed} and global batch {self.batch_size * self.world_size}")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
