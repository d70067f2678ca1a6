"""One exception type for every error a user can fix (bad input, missing model, missing key).

The CLI and the app catch `SlimeError` and show its message; anything else is a bug.
"""


class SlimeError(ValueError):
    """A problem with the user's input or set-up, with a message that says how to fix it."""


class MissingModelError(SlimeError):
    """A model, weight file, package or API key that a stage needs is not available."""
