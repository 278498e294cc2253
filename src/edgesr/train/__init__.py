"""Training: losses, learning-rate schedules, torchrun helpers and the iteration-based trainer."""

from edgesr.train.settings import TrainConfig
from edgesr.train.trainer import TrainResult, checkpoint_state, load_checkpoint, load_model_weights, train

__all__ = ["TrainConfig", "TrainResult", "checkpoint_state", "load_checkpoint", "load_model_weights", "train"]
