"""What a search is: its settings (SearchConfig) and each trial's hyperparameters and seed."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from ...errors import ConfigError, choose


@dataclass
class SearchConfig:
    """A random search. The defaults are the book's (chapter 6, hyperparameter_optimization.py)."""

    trials: int = 100
    epochs: int = 50
    dataset: str = "mnist"
    data_dir: str | None = None
    n_data: int = 500  # the first n_data training images are all the search sees
    validation: float = 0.2  # the fraction of them held out for validation
    seed: int = 0
    lr_range: tuple[float, float] = (-6.0, -2.0)  # log10
    weight_decay_range: tuple[float, float] = (-8.0, -4.0)  # log10
    hidden: list[int] = field(default_factory=lambda: [100] * 6)
    activation: str = "relu"
    init: str | float = "he"
    batch_size: int = 100
    dtype: str = "float32"

    def validate(self) -> SearchConfig:
        choose("dataset", self.dataset, ("mnist", "fashion-mnist", "digits"))
        n_val = self.n_validation
        checks = [
            (self.trials > 0, f"--trials must be positive, got {self.trials}"),
            (self.epochs > 0, f"--epochs must be positive, got {self.epochs}"),
            (self.batch_size > 0, f"--batch-size must be positive, got {self.batch_size}"),
            (
                bool(self.hidden) and all(h > 0 for h in self.hidden),
                f"--hidden sizes must be positive, got {self.hidden}",
            ),
            (0 < self.validation < 1, f"--validation must lie in (0, 1), got {self.validation}"),
            (
                n_val >= 1 and self.n_data - n_val >= self.batch_size,
                f"--n-data {self.n_data} with --validation {self.validation} leaves "
                f"{self.n_data - n_val} training samples for batches of {self.batch_size}",
            ),
        ]
        for name in ("lr_range", "weight_decay_range"):
            low, high = getattr(self, name)
            checks.append((
                math.isfinite(low) and math.isfinite(high) and low <= high,
                f"--{name.replace('_', '-')} must be LOW HIGH (exponents of 10), got {low} {high}",
            ))  # fmt: skip
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        return self

    @property
    def n_validation(self) -> int:
        return int(self.n_data * self.validation)

    def defining(self) -> dict:
        """The settings a trial's result depends on: a resumed search must not change them."""
        d = asdict(self)
        for key in ("trials", "data_dir"):
            d.pop(key)
        d["lr_range"], d["weight_decay_range"] = list(self.lr_range), list(self.weight_decay_range)
        return d


def trial_settings(config: SearchConfig, trial: int) -> dict:
    """Trial `trial`'s hyperparameters and seed, drawn from child `trial` of SeedSequence(seed)."""
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(trial,)))
    lr = 10 ** float(rng.uniform(*config.lr_range))
    weight_decay = 10 ** float(rng.uniform(*config.weight_decay_range))
    return {"lr": lr, "weight_decay": weight_decay, "seed": int(rng.integers(2**31))}
