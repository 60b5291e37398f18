"""A Django project as a Dramatiq app: ``--app django`` (the settings ``DJANGO_SETTINGS_MODULE``
names) or ``--app django:mysite.settings``.

:func:`setup_django` runs ``django.setup()``, which builds the project's broker (django_dramatiq
builds it from ``DRAMATIQ_BROKER``, ``resc_dramatiq.Completion`` among its middleware), then
imports every installed app's tasks modules as ``manage.py rundramatiq`` finds them
(``DRAMATIQ_AUTODISCOVER_MODULES``, default ``("tasks",)``, a package's submodules included,
less ``DRAMATIQ_IGNORED_MODULES``), so their actors and ``@on_done`` rules land on that broker.
Django stays optional: this module is imported only for such a spec.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from types import ModuleType
from typing import Any

import dramatiq
from dramatiq import Broker

from ..errors import ConfigError

#: The ``--app`` spelling of a Django project (``django`` or ``django:SETTINGS``).
DJANGO = "django"


def is_django_spec(spec: str) -> bool:
    """True when ``spec`` names a Django project rather than a module."""
    return spec == DJANGO or spec.startswith(f"{DJANGO}:")


def setup_django(spec: str) -> tuple[Broker, list[ModuleType]]:
    """Set Django up with the settings ``spec`` names; (the global broker, the tasks modules
    imported). Raise :class:`ConfigError` saying what failed and where."""
    settings_module = spec.partition(":")[2] or os.environ.get("DJANGO_SETTINGS_MODULE", "")
    if not settings_module:
        raise ConfigError(
            f"--app {spec!r}: which settings? Set DJANGO_SETTINGS_MODULE or write "
            "--app django:mysite.settings"
        )
    try:
        import django
        from django.conf import settings
    except ImportError:
        raise ConfigError(f"--app {spec!r}: Django is not installed (pip install django)") from None
    if settings.configured and settings_module != settings.SETTINGS_MODULE:
        raise ConfigError(
            f"--app {spec!r}: Django is already set up with {settings.SETTINGS_MODULE!r}"
        )
    try:
        importlib.import_module(settings_module)
    except Exception as e:
        raise ConfigError(
            f"--app {spec!r}: cannot import the settings {settings_module!r}: {e}"
        ) from None
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module  # what django.setup() reads
    try:
        django.setup()
    except Exception as e:
        raise ConfigError(
            f"--app {spec!r}: django.setup() with {settings_module!r} failed: "
            f"{type(e).__name__}: {e}"
        ) from None
    broker = dramatiq.get_broker()
    if "done_event" not in broker.actor_options:  # the option Completion declares
        raise ConfigError(
            f"--app {spec!r}: the broker {settings_module!r} builds has no Completion: add "
            '"resc_dramatiq.Completion" to DRAMATIQ_BROKER["MIDDLEWARE"] before '
            '"dramatiq.middleware.Retries"'
        )
    return broker, _import_tasks_modules(spec, settings)


def _import_tasks_modules(spec: str, settings: Any) -> list[ModuleType]:
    from django.apps import apps
    from django.utils.module_loading import module_has_submodule

    names: tuple[str, ...] = tuple(getattr(settings, "DRAMATIQ_AUTODISCOVER_MODULES", ("tasks",)))
    ignored: set[str] = set(getattr(settings, "DRAMATIQ_IGNORED_MODULES", ()))
    found = [
        f"{conf.name}.{name}"
        for conf in apps.get_app_configs()
        for name in names
        if module_has_submodule(conf.module, name)
    ]
    modules: list[ModuleType] = []
    for modname in found:
        if _ignored(modname, ignored):
            continue
        module = _import(spec, modname)
        modules.append(module)
        if hasattr(module, "__path__"):  # a package: its submodules too
            for sub in pkgutil.walk_packages(module.__path__, f"{modname}."):
                if not _ignored(sub.name, ignored):
                    modules.append(_import(spec, sub.name))
    return modules


def _ignored(modname: str, ignored: set[str]) -> bool:
    """As rundramatiq: a name listed, or ``package.*`` for any package above it."""
    parts = modname.split(".")
    return modname in ignored or any(
        ".".join(parts[:n]) + ".*" in ignored for n in range(1, len(parts))
    )


def _import(spec: str, modname: str) -> ModuleType:
    try:
        return importlib.import_module(modname)
    except Exception as e:
        raise ConfigError(
            f"--app {spec!r}: cannot import the tasks module {modname!r}: {e}"
        ) from None
