"""Where the example project lives, installed or in a checkout.

A wheel carries ``example_project/`` inside the package, at
``resc_dramatiq/_example/example_project`` (``force-include`` in ``pyproject.toml``); a
checkout (or an editable install of one) has it beside the package, at the top of the
source tree. Both are found through the package itself, never through the working
directory, so the demo runs from any folder.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from ..errors import RescError

#: The example's directory name, also its import name (``example_project.app``).
NAME = "example_project"


class ExampleNotFound(RescError):
    """Raised when neither the installed copy nor a checkout's example project exists."""


def example_project() -> Path:
    """The ``example_project`` directory: the copy the installed package carries, else the
    one beside the package in a source tree."""
    package = files("resc_dramatiq")
    candidates = [package / "_example" / NAME, package / ".." / NAME]
    for candidate in candidates:
        # the demo runs the example in child processes: it needs a real directory, which
        # every installed package (wheel or editable) has; a zipped one has none
        if isinstance(candidate, Path) and (candidate / "app.py").is_file():
            return candidate.resolve()
    looked = ", ".join(str(c) for c in candidates)
    raise ExampleNotFound(
        f"{NAME}/ not found (looked in {looked}): reinstall resc-dramatiq from a wheel "
        "or run from a checkout"
    )
