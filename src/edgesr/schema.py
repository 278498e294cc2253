"""Base class for every typed configuration section of ``params.yaml``.

Frozen, strict about unknown keys (``extra="forbid"``), so a typo stops the run at load time with
a message that names the key (see :mod:`edgesr.config`), not deep inside a stage.
"""

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A frozen pydantic model that rejects unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)
