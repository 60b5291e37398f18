"""The package root is the public surface: every user-facing name, and nothing else."""

from __future__ import annotations

import inspect
import types

import resc_dramatiq
from resc_dramatiq import errors


def test_every_name_in_all_is_importable_from_the_root() -> None:
    for name in resc_dramatiq.__all__:
        assert hasattr(resc_dramatiq, name), name


def test_all_lists_every_public_name_of_the_root_once_and_sorted() -> None:
    public = {
        name
        for name, value in vars(resc_dramatiq).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(resc_dramatiq.__all__)
    assert len(set(resc_dramatiq.__all__)) == len(resc_dramatiq.__all__)


def test_the_whole_error_tree_is_exported() -> None:
    tree = {
        name
        for name, value in vars(errors).items()
        if inspect.isclass(value) and issubclass(value, errors.RescError)
    }
    assert tree <= set(resc_dramatiq.__all__)


def test_the_names_the_readme_imports_come_from_the_root() -> None:
    from resc_dramatiq import (  # noqa: F401
        Completion,
        Config,
        Redelivery,
        Registry,
        Router,
        RouterOptions,
        RuleSet,
        on_done,
        on_schedule,
    )


def test_the_dead_letter_library_is_exported_from_the_root() -> None:
    from resc_dramatiq.ops import dead, dramatiq_dead

    assert resc_dramatiq.list_dead is dead.list_dead
    assert resc_dramatiq.requeue_dead is dead.requeue
    assert resc_dramatiq.drop_dead is dead.drop
    assert resc_dramatiq.select_dead is dead.select
    assert resc_dramatiq.DeadLetter is dead.DeadLetter
    assert resc_dramatiq.DeadPage is dead.DeadPage
    assert resc_dramatiq.list_dead_messages is dramatiq_dead.list_dead_messages
    assert resc_dramatiq.requeue_messages is dramatiq_dead.requeue_messages
    assert resc_dramatiq.drop_messages is dramatiq_dead.drop_messages
    for name in ("DeadMessage", "DeadMessagePage", "Moved"):
        assert getattr(resc_dramatiq, name) is getattr(dramatiq_dead, name)
