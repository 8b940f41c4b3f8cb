"""Training: the configuration, data on the device, the loop and its callbacks, checkpoints and
run folders. `Trainer(TrainConfig(...), dataset, out).run()` trains one network."""

from .callbacks import Callback, DivergenceGuard, Evaluation, FileQueue, LossMeter
from .checkpoint import load_checkpoint, load_model, save_checkpoint
from .comm import SingleProcess
from .config import MODELS, TrainConfig, resumed_config
from .placement import Sampler, epoch_order, to_device
from .trainer import Interrupted, Trainer, default_callbacks
from .writers import Checkpointer, Console, MetricsFile, ProgressBar, StopSignals, TensorBoard

__all__ = [
    "MODELS",
    "Callback",
    "Checkpointer",
    "Console",
    "DivergenceGuard",
    "Evaluation",
    "FileQueue",
    "Interrupted",
    "LossMeter",
    "MetricsFile",
    "ProgressBar",
    "Sampler",
    "SingleProcess",
    "StopSignals",
    "TensorBoard",
    "TrainConfig",
    "Trainer",
    "default_callbacks",
    "epoch_order",
    "load_checkpoint",
    "load_model",
    "resumed_config",
    "save_checkpoint",
    "to_device",
]
