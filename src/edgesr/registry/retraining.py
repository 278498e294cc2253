"""After a pipeline run: attempt the promotion of every candidate the ``register`` stage just registered.

The Prefect flow (``pipelines/flow.py``) calls :func:`promote_new_candidates` when ``register`` ran; a
run whose models did not change registers nothing new (``metrics/register.json`` says ``new: false``) and
promotes nothing. A failed gate or a missing signing key is an outcome to report, not a crash of the
scheduled run: the candidate stays registered and can be promoted by hand (``edgesr promote``).
"""

from __future__ import annotations

import json
from pathlib import Path

from edgesr.artifacts import register_file
from edgesr.config import Params
from edgesr.errors import MissingInputError, UserError
from edgesr.registry.promote import promote
from edgesr.registry.store import Registry

__all__ = ["promote_new_candidates"]


def promote_new_candidates(params: Params, registry: Registry, root: Path = Path(".")) -> dict[str, str]:
    """Model -> what happened to its new candidate (the decision with every gate, or why none was made)."""
    path = register_file(params, root)
    if not path.is_file():
        raise MissingInputError(f"{path} not found: the register stage has not run (`dvc repro register`)")
    outcomes = {}
    for name, entry in json.loads(path.read_text()).items():
        if not entry["new"]:
            outcomes[name] = f"{name}: unchanged since version {entry['version']}; nothing to promote"
            continue
        try:
            outcomes[name] = promote(params, name, registry, root=root).describe()
        except UserError as err:
            outcomes[name] = f"{name} version {entry['version']}: promotion not attempted: {err}"
    return outcomes
