"""Training: losses, learning-rate schedules, torchrun helpers, the iteration-based trainer, one training
run as a pipeline stage (``run``) and a trained model back from its checkpoint (``restore``).

Import the modules themselves: this package re-exports nothing (see :mod:`edgesr.data`).
"""
