"""What a search is: its settings (SearchConfig) and each trial's hyperparameters and seed."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from ...errors import ConfigError, choose

#: the most trials one search runs: each finished one is a record in memory and in trials.jsonl
MAX_TRIALS = 100_000

#: the largest |exponent| of a learning rate or weight decay range (10^30 is far past any use)
MAX_EXPONENT = 30


def _whole(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _number(value) -> bool:
    return (
        isinstance(value, int | float | np.number)
        and not isinstance(value, bool)
        and (math.isfinite(value))
    )


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


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
        """Raise ConfigError, one line naming the option, for settings no search can run with."""
        choose("dataset", self.dataset, ("mnist", "fashion-mnist", "digits"))
        for name in ("trials", "epochs", "batch_size", "n_data"):
            value = getattr(self, name)
            if not _whole(value) or value < 1:
                raise ConfigError(f"{_option(name)} must be a positive integer, got {value!r}")
        if self.trials > MAX_TRIALS:
            raise ConfigError(
                f"--trials must be at most {MAX_TRIALS} (every finished trial is kept in memory "
                f"and in trials.jsonl), got {self.trials}; split a larger search by --seed"
            )
        if not (self.hidden and all(_whole(h) and h > 0 for h in self.hidden)):
            raise ConfigError(f"--hidden sizes must be positive integers, got {self.hidden}")
        if not (_whole(self.seed) and 0 <= self.seed < 2**63):
            raise ConfigError(f"--seed must be an integer >= 0, got {self.seed!r}")
        # NaN fails the comparison too, before int() could raise on it
        if not (_number(self.validation) and 0 < self.validation < 1):
            raise ConfigError(f"--validation must lie in (0, 1), got {self.validation!r}")
        n_val = self.n_validation
        if n_val < 1 or self.n_data - n_val < self.batch_size:
            raise ConfigError(
                f"--n-data {self.n_data} with --validation {self.validation} leaves {n_val} "
                f"validation and {self.n_data - n_val} training samples: at least 1 and "
                f"--batch-size {self.batch_size} are needed"
            )
        for name in ("lr_range", "weight_decay_range"):
            pair = tuple(getattr(self, name))
            if not (
                len(pair) == 2
                and all(_number(x) and abs(x) <= MAX_EXPONENT for x in pair)
                and pair[0] <= pair[1]
            ):
                raise ConfigError(
                    f"{_option(name)} must be LOW HIGH, exponents of 10 with "
                    f"-{MAX_EXPONENT} <= LOW <= HIGH <= {MAX_EXPONENT}, got "
                    + " ".join(f"{x:g}" if _number(x) else repr(x) for x in pair)
                )
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
