"""Training: losses, learning-rate schedules, torchrun helpers and the iteration-based trainer.

Import the modules themselves (:mod:`edgesr.train.trainer`, ...): this package imports nothing, so that
:mod:`edgesr.train.settings` loads without PyTorch (the ``params.yaml`` schema, :mod:`edgesr.settings`).
"""
