"""Errors a user can cause and fix, as opposed to bugs.

Everything the ``edgesr`` command line reports as one ``error: ...`` line (exit status 2) is a
:class:`UserError`: a bad ``params.yaml``, a missing input, a stage not run yet, an int8 model that
failed its checks, an unreadable image. Any other exception is a bug and keeps its traceback. The
subclasses also derive from the built-in exception their callers catch (``ValueError``,
``FileNotFoundError``), so library code and tests can keep catching those.
"""

from __future__ import annotations

__all__ = ["MissingInputError", "UsageError", "UserError"]


class UserError(Exception):
    """A problem the user can fix; the message says what is wrong and how to fix it."""


class UsageError(UserError, ValueError):
    """A choice the user made (a command-line option, a combination of settings) that cannot work."""


class MissingInputError(UserError, FileNotFoundError):
    """A file or folder that the user must give, or that an earlier stage writes, does not exist."""
