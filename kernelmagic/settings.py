"""Settings both front ends read: where new specs go, the capture mode, and the user's own
noise and secret patterns.

They live where Jupyter keeps the configuration of its other applications: a
``jupyter_kernelmagic_config.py`` or ``.json`` in Jupyter's config path (``jupyter --paths``;
``~/.jupyter`` for a user, ``/etc/jupyter`` for a site), in the ``KernelMagics`` section::

    c.KernelMagics.extra_secrets = ["*_PIN"]
    c.KernelMagics.default_location = "sys-prefix"

``kernelmagic`` reads them on every run; the magics read them when first used, and IPython's
own config (``ipython_config.py``, ``%config KernelMagics.x = ...``) may override them for a
session. A value of the wrong shape is an error that names the file, never silently ignored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any

from kernelmagic.domain.jupyter_rules import config_dirs
from kernelmagic.domain.policy import EnvPolicy
from kernelmagic.domain.provenance import CAPTURE_MODES
from kernelmagic.errors import InvalidInput

CONFIG_BASENAME = "jupyter_kernelmagic_config"
SECTION = "KernelMagics"
LOCATIONS = ("user", "sys-prefix")


@dataclass(frozen=True)
class Settings:
    """What the user configured; the defaults are what kernelmagic does unconfigured.

    Declared once, here: each field's metadata holds its help and, for a choice, the
    choices. The magics make their configurable traits from these fields (so that
    ``%config KernelMagics`` shows them and IPython's config can set them); the command line
    reads the same file without loading traitlets unless a file exists."""

    default_location: str = field(
        default="user",
        metadata={
            "choices": LOCATIONS,
            "help": "Where new specs go when no --user/--sys-prefix/--prefix is given.",
        },
    )
    default_capture: str = field(
        default="changed",
        metadata={"choices": CAPTURE_MODES, "help": "The --capture mode used when none is given."},
    )
    extra_secrets: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "More glob patterns (case-insensitive) of variable names that hold secrets."
        },
    )
    extra_noise: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "More glob patterns of variables never to capture (e.g. site-specific "
            "session variables)."
        },
    )

    def __post_init__(self) -> None:
        for setting in fields(self):
            choices = setting.metadata.get("choices")
            value = getattr(self, setting.name)
            if choices is not None and value not in choices:
                raise InvalidInput(
                    f"{SECTION}.{setting.name} must be one of {', '.join(choices)}, not {value!r}"
                )

    @property
    def policy(self) -> EnvPolicy:
        """The built-in noise and secret rules plus the user's own patterns."""
        return EnvPolicy(self.extra_secrets, self.extra_noise)

    @classmethod
    def from_section(cls, section: dict[str, Any], where: str = "") -> Settings:
        """Settings from a config section (``c.KernelMagics``); ``InvalidInput`` naming
        ``where`` for a value of the wrong type."""
        values: dict[str, Any] = {}
        for setting in fields(cls):
            key = setting.name
            if key in section and "choices" in setting.metadata:
                values[key] = section[key]
            elif key in section:
                value = section[key]
                if not isinstance(value, (list, tuple)) or not all(
                    isinstance(v, str) for v in value
                ):
                    raise InvalidInput(f"{SECTION}.{key} in {where} must be a list of strings")
                values[key] = tuple(value)
        try:
            return cls(**values)
        except InvalidInput as exc:
            raise InvalidInput(f"{exc} (in {where})") from None


def config_files() -> list[str]:
    """The ``jupyter_kernelmagic_config`` files that exist, lowest priority first (as
    Jupyter applications load their own: ``.py`` then ``.json`` in each config dir)."""
    return [
        os.path.join(directory, CONFIG_BASENAME + ext)
        for directory in reversed(config_dirs())
        for ext in (".py", ".json")
        if os.path.isfile(os.path.join(directory, CONFIG_BASENAME + ext))
    ]


def load() -> Settings:
    """The settings of the config files (a few stat calls when there are none)."""
    found = config_files()
    if not found:
        return Settings()
    # traitlets' loaders only when a file exists: they are what Jupyter applications use.
    from traitlets.config.loader import (
        Config,
        JSONFileConfigLoader,
        LazyConfigValue,
        PyFileConfigLoader,
    )

    merged = Config()
    for path in found:
        directory, filename = os.path.split(path)
        loader = PyFileConfigLoader if filename.endswith(".py") else JSONFileConfigLoader
        try:
            merged.merge(loader(filename, path=directory).load_config())
        except Exception as exc:  # a broken file must say so, not be skipped in silence
            raise InvalidInput(f"cannot read {path}: {exc}") from None
    # A plain dict lookup: indexing a traitlets Config creates the section it looks up.
    section = dict(dict(merged).get(SECTION) or {})
    for key, value in section.items():
        if isinstance(value, LazyConfigValue):  # c.KernelMagics.extra_secrets.append(...)
            section[key] = value.get_value([])
    return Settings.from_section(section, ", ".join(found))
