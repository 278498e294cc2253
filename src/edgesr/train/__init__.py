"""Training: losses, learning-rate schedules, torchrun helpers, the iteration-based trainer, one training
run as a pipeline stage (``run``) and a trained model back from its checkpoint (``restore``).

Import the modules themselves (:mod:`edgesr.train.trainer`, ...): this package imports nothing, so that
:mod:`edgesr.train.settings` loads without PyTorch (the ``params.yaml`` schema, :mod:`edgesr.settings`),
and each DVC stage depends on the modules it uses.
"""
