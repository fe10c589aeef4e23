"""Which specs others can change: the rule every path that runs a spec's program follows.

A spec whose ``kernel.json``, directory or kernels directory another user can write (or owns)
could make kernelmagic run anything as you: its argv, or a ``sitecustomize.py`` on a
``PYTHONPATH`` it sets. So could whatever the spec runs: its program and the environment
around it (a ``.pth`` file in a group-writable venv runs at every interpreter start), the
directories it puts on ``PYTHONPATH``, a library it preloads, an IPython profile dir whose
startup files the kernel runs (``RUNS_FROM``), a container image given as a path, the project it was
made from; and so could any directory above one of these, since whoever can rename an
ancestor can put another tree in its place. The rule is OpenSSH's ``StrictModes``: each path
and every directory above it, up to ``/``, is owned by root or you and writable by nobody
else (a sticky directory such as ``/tmp`` excepted, where others cannot replace what is
yours; a private group of your own excepted; ``ownership`` holds that test). The doctor's
probes, ``doctor --launch``,
``shell`` and ``refresh`` run such a spec only when it is named and the user says
``--trust`` (having read it).
"""

from __future__ import annotations

import os
from typing import Any

from kernelmagic.domain import containers
from kernelmagic.domain.ownership import TrustWalk, program_paths
from kernelmagic.domain.provenance import Provenance

TRUST_ADVICE = (
    "kernelmagic runs no program or env that others can change (make it yours and not "
    "group/world-writable, or name it with --trust once you have read it)"
)


# The variables of a spec's env that name code the kernel runs or loads (what is there runs
# as you), with what separates their entries (none: one path). The dynamic loader's,
# Python's (a sitecustomize.py on PYTHONPATH, PYTHONSTARTUP and an IPython profile's startup
# files, which ipykernel runs; Jupyter's config files are Python too), R's and Julia's.
RUNS_FROM: dict[str, tuple[str, ...]] = {
    "PATH": (os.pathsep,),
    "PYTHONPATH": (os.pathsep,),
    "LD_LIBRARY_PATH": (os.pathsep,),
    "LD_PRELOAD": (" ", os.pathsep),
    "PYTHONHOME": (),
    "PYTHONSTARTUP": (),
    "PYTHONUSERBASE": (),
    "IPYTHONDIR": (),
    "JUPYTER_CONFIG_DIR": (),
    "JUPYTER_CONFIG_PATH": (os.pathsep,),
    "R_LIBS": (os.pathsep,),
    "R_LIBS_USER": (os.pathsep,),
    "R_PROFILE_USER": (),
    "JULIA_LOAD_PATH": (os.pathsep,),
    "JULIA_DEPOT_PATH": (os.pathsep,),
}


def untrusted(info: Any, walk: TrustWalk | None = None) -> str | None:
    """Why a spec (a ``SpecInfo``) is not to be run as this user, or None: another user can
    change its kernel.json, its directory, the kernels dir, what it runs, or a directory
    above any of them. A command that asks about many specs passes one ``walk`` for all."""
    if info.native:
        return None
    spec = info.spec if isinstance(info.spec, dict) else {}
    if walk is None:
        with TrustWalk() as walk:
            return untrusted(info, walk)
    paths = [info.kernel_json, info.resource_dir, *executed(spec, walk)]
    return walk.why(paths)


def executed(spec: dict[str, Any], walk: TrustWalk | None = None) -> list[str]:
    """What running ``spec`` executes or imports from, as paths: its program (and where a
    link takes it), the environment around the program (its prefix and site-packages, where
    ``.pth`` files run), the absolute paths its env gives the variables of ``RUNS_FROM``
    (``PYTHONPATH``, ``LD_PRELOAD``, ...), a container image given as a path, and the project
    it was made from."""
    found: list[str] = []
    argv = spec.get("argv")
    env = spec.get("env") if isinstance(spec.get("env"), dict) else {}
    if isinstance(argv, list) and argv and isinstance(argv[0], str):
        found += walk.program_paths(argv[0]) if walk is not None else program_paths(argv[0])
    for name, separators in RUNS_FROM.items():
        value = env.get(name) if isinstance(env, dict) else None
        if isinstance(value, str):
            for separator in separators[1:]:
                value = value.replace(separator, separators[0])
            words = value.split(separators[0]) if separators else [value]
            found += [p for p in words if os.path.isabs(p) and "$" not in p]
    container = containers.of_spec(spec)
    if container is not None and container.is_path:
        found += [container.program, container.image]
    record = Provenance.of_spec(spec)
    root = (record.project or {}).get("root") if record is not None else None
    if isinstance(root, str) and os.path.isabs(root):
        found.append(root)
    return found
