"""Find and read kernel specs exactly as Jupyter does.

Discovery follows ``jupyter_client.kernelspec.KernelSpecManager`` (same directories, same
precedence, case-insensitive names, the native ``python3`` fallback) without importing
jupyter_client, which costs about 0.3 s. Specs are read as raw JSON so that keys
jupyter_client does not know survive. Nothing here writes, prints or imports IPython.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Any

from jupyter_core.paths import jupyter_data_dir, jupyter_path

from kernelmagic import reading
from kernelmagic.domain import checks, jupyter_rules
from kernelmagic.domain.jupyter_rules import ipython_dir as ipython_dir
from kernelmagic.domain.spec_info import NAME_RULE as NAME_RULE
from kernelmagic.domain.spec_info import SpecInfo as SpecInfo
from kernelmagic.domain.spec_info import validate_name as validate_name
from kernelmagic.errors import InvalidInput, NoSuchKernelSpec, of_type, path_text, true_or_false
from kernelmagic.reading import MAX_SPEC_BYTES, parse_spec, read_regular_file
from kernelmagic.reading import read_spec_file as read_spec_file
from kernelmagic.storage import lookups

NATIVE_KERNEL_NAME = "python3"


def kernel_dirs() -> list[str]:
    """The directories Jupyter searches for kernel specs, highest priority first."""
    dirs = jupyter_path("kernels")
    ipdir = ipython_dir()
    return [*dirs, os.path.join(ipdir, "kernels")] if ipdir is not None else dirs


def searched_by_jupyter(kernels_dir: str) -> bool:
    """Whether Jupyter looks for specs in ``kernels_dir``."""
    wanted = os.path.realpath(kernels_dir)
    return any(os.path.realpath(d) == wanted for d in kernel_dirs())


def location_dir(user: bool = False, sys_prefix: bool = False, prefix: str | None = None) -> str:
    """The kernels directory for ``--user`` (the default), ``--sys-prefix`` or ``--prefix``."""
    true_or_false(user, "user")
    true_or_false(sys_prefix, "sys_prefix")
    if sum((bool(user), bool(sys_prefix), prefix is not None)) > 1:
        raise InvalidInput("choose one location: --user, --sys-prefix or --prefix DIR")
    if prefix is not None:
        prefix = path_text(prefix, "prefix")
    if prefix == "":
        raise InvalidInput("the prefix is empty; name the dir, or leave it out")
    if prefix is not None:
        return os.path.join(os.path.abspath(prefix), "share", "jupyter", "kernels")
    if sys_prefix:
        return os.path.join(sys.prefix, "share", "jupyter", "kernels")
    return os.path.join(jupyter_data_dir(), "kernels")


# --- discovery -------------------------------------------------------------------------


def specs_in(directory: str) -> dict[str, str]:
    """Lowercased name -> resource dir for the spec dirs of one kernels directory."""
    return {name: path for name, (path, _) in _first(_candidates([directory]), _is_file).items()}


def spec_files(
    directories: Iterable[str],
    wanted: Callable[[str], bool] | None = None,
    *,
    first_entry_wins: bool = False,
) -> dict[str, tuple[str, bytes | OSError]]:
    """Lowercased name -> (resource dir, its kernel.json's bytes or why they cannot be read)
    of the spec Jupyter takes for each name (``wanted`` ones only) in ``directories``, every
    read overlapped. Within one directory the last entry of a name wins, as in
    ``find_kernel_specs``; ``first_entry_wins`` is ``get_kernel_spec``'s rule. In
    ``find_kernel_specs``' order too (the order of /api/kernelspecs; walk X: the drop-in
    server's was reversed): by the kernels dir each is taken from, then where its name first
    stands in that dir's listing."""
    positions: dict[tuple[int, str], int] = {}
    candidates = _candidates(directories, wanted, first_entry_wins, positions)
    chosen = _first(candidates, _open_kernel_json, _read)
    rank_of = {path: rank for places in candidates.values() for rank, path in places}

    def place(item: tuple[str, tuple[str, Any]]) -> tuple[int, int]:
        name, (path, _) = item
        return rank_of[path], positions[rank_of[path], name]

    return dict(sorted(chosen.items(), key=place))


def _candidates(
    directories: Iterable[str],
    wanted: Callable[[str], bool] | None = None,
    first_entry_wins: bool = False,
    positions: dict[tuple[int, str], int] | None = None,
) -> dict[str, list[tuple[int, str]]]:
    """Lowercased name -> (rank of its kernels dir, entry path) of every entry that may hold
    its spec, in the order Jupyter prefers them: earlier kernels dirs first and, within one,
    later entries first (jupyter_client lets a later entry of a name overwrite an earlier).
    ``positions``, if given, gets where each name first stands in each listing.
    Nothing is stat'ed: whether an entry is a spec dir is its ``kernel.json``'s question."""
    found: dict[str, list[tuple[int, str]]] = {}
    for rank, directory in enumerate(directories):
        try:
            with os.scandir(directory) as listing:
                entries = list(listing)
        except OSError:  # gone, a file, unreadable, a symlink loop, a name too long, EIO:
            continue  # no specs here, as for Jupyter's os.path.exists (it lists the rest)
        indexed = list(enumerate(entries))
        for index, entry in indexed if first_entry_wins else reversed(indexed):
            name = entry.name.lower()
            if wanted is None or wanted(name):
                found.setdefault(name, []).append((rank, entry.path))
                if positions is not None:  # where the name first stands in this listing
                    positions[rank, name] = min(index, positions.get((rank, name), index))
    return found


def _first(
    candidates: Mapping[str, list[tuple[int, str]]],
    probe: Callable[[str], Any],
    then: Callable[[str, Any], Any] | None = None,
) -> dict[str, tuple[str, Any]]:
    """Name -> (resource dir, answer) of the first candidate whose ``kernel.json`` the probe
    answers (None: no spec there, try the next); with ``then``, the answer is
    ``then(path, probe(path))``: the probe makes the path lookup, ``then`` reads what it
    opened (``lookups.overlapped_opens``). Each round probes the best remaining candidate of
    every name at once: on a network filesystem each probe is a round trip. A name found in
    its first place, the usual case, costs one."""
    chosen: dict[str, tuple[str, Any]] = {}
    wanted = [(name, 0) for name in candidates]
    while wanted:

        def path_of(item: tuple[str, int]) -> str:
            name, i = item
            return candidates[name][i][1] + os.sep + "kernel.json"

        if then is None:
            answers = lookups.overlapped(lambda item: probe(path_of(item)), wanted)
        else:
            answers = lookups.overlapped_opens(
                lambda item: probe(path_of(item)),
                lambda item, opened: then(path_of(item), opened),
                wanted,
            )
        retry = []
        for (name, i), answer in zip(wanted, answers, strict=True):
            if answer is not None:
                chosen[name] = (candidates[name][i][1], answer)
            elif i + 1 < len(candidates[name]):
                retry.append((name, i + 1))
        wanted = retry
    return chosen


def _is_file(path: str) -> bool | None:
    """Jupyter's test of a spec dir (``os.path.isfile`` of its kernel.json); None if not."""
    return True if os.path.isfile(path) else None


def _all_spec_dirs(
    first_entry_wins: bool = True, wanted: frozenset[str] | None = None
) -> dict[str, str]:
    """Name -> resource dir of every spec (the ``wanted`` names only: a lookup by name looks
    at those entries alone), whatever Jupyter config allows (the specs
    ``KernelSpecManager.get_kernel_spec`` can still load by name). Within a kernels dir,
    the first entry of a name (``Foo`` and ``foo``) is the one ``get_kernel_spec`` starts;
    ``find_kernel_specs`` names the last."""
    only = None if wanted is None else wanted.__contains__
    chosen = _first(_candidates(kernel_dirs(), only, first_entry_wins), _is_file)
    found = {name: path for name, (path, _) in chosen.items()}
    if NATIVE_KERNEL_NAME not in found and (wanted is None or NATIVE_KERNEL_NAME in wanted):
        native = _native_dir()
        if native is not None:
            found[NATIVE_KERNEL_NAME] = native
    return found


# ipykernel's built-in python3, for where no python3 spec is on disk. Imported only then:
# ipykernel's own install puts one in the environment, and listing such a machine (most)
# loads none of the machinery that asks ipykernel and caches its answer.
def _native_dir() -> str | None:
    from kernelmagic.storage import ipykernel_specs

    return ipykernel_specs.resources_dir()


def _native_info(resource_dir: str) -> SpecInfo:
    from kernelmagic.storage import ipykernel_specs

    return SpecInfo(NATIVE_KERNEL_NAME, resource_dir, ipykernel_specs.native_spec(), native=True)


def find_kernel_specs() -> dict[str, str]:
    """Name -> resource dir, equal to ``KernelSpecManager().find_kernel_specs()`` configured
    by the Jupyter config files (``allowed_kernelspecs``, ``ensure_native_kernel``)."""
    found = _all_spec_dirs(first_entry_wins=False)
    config = jupyter_rules.discovery_config()
    if not config.ensure_native and _is_native(NATIVE_KERNEL_NAME, found.get(NATIVE_KERNEL_NAME)):
        del found[NATIVE_KERNEL_NAME]
    if config.allowed:
        found = {name: path for name, path in found.items() if name in config.allowed}
    return found


def _is_native(name: str, path: str | None) -> bool:
    return (
        name == NATIVE_KERNEL_NAME
        and path is not None
        and not os.path.exists(os.path.join(path, "kernel.json"))
    )


def spec_locations(listed: Iterable[SpecInfo] = ()) -> dict[str, list[str]]:
    """Every resource dir of every name (lowercased), the winning one first, from one scan;
    the kernel.json of a spec just ``listed`` (read, so a file) is not looked at again."""
    candidates = _candidates(kernel_dirs())
    paths = [path + os.sep + "kernel.json" for places in candidates.values() for _, path in places]
    is_spec = {info.kernel_json: True for info in listed if not info.native}
    unknown = [path for path in paths if path not in is_spec]
    is_spec.update(zip(unknown, lookups.overlapped(os.path.isfile, unknown), strict=True))
    found: dict[str, list[str]] = {}
    for name, places in candidates.items():
        ranks = set()  # within one kernels dir, only the entry Jupyter would take
        for rank, path in places:
            if rank not in ranks and is_spec[path + os.sep + "kernel.json"]:
                ranks.add(rank)
                found.setdefault(name, []).append(path)
    return found


def case_twins(listed: Iterable[SpecInfo]) -> dict[str, str]:
    """Name -> the resource dir ``get_kernel_spec`` starts, for each listed spec whose kernels
    dir holds entries of its name that differ in case (``Foo``, ``foo``): the listing shows
    the last of them, a start takes the first that is a spec."""
    wanted = {info.name for info in listed if not info.native}
    candidates = _candidates(kernel_dirs(), lambda name: name in wanted, first_entry_wins=True)
    twins = {
        name: places
        for name, places in candidates.items()
        if len({rank for rank, _ in places}) < len(places)  # two entries in one kernels dir
    }
    started = _first(twins, _is_file)
    shown = {info.name: info.resource_dir for info in listed}
    return {name: path for name, (path, _) in started.items() if path != shown.get(name)}


def _read_kernel_json(path: str) -> bytes | None:
    """The bytes of a ``kernel.json``, or None where Jupyter sees no spec.

    Jupyter counts a directory as a spec when ``os.path.isfile(kernel.json)``: a FIFO, a
    device, a socket, a dangling or looping link or a directory it cannot enter is no spec
    (and a lower directory's spec of that name wins). ``OSError`` for a regular file that
    cannot be read, or is larger than ``MAX_SPEC_BYTES`` (Jupyter then hides the spec).
    """
    return read_regular_file(path, MAX_SPEC_BYTES)


def _unreadable(name: str, resource_dir: str, exc: OSError | str) -> SpecInfo:
    kernel_json = os.path.join(resource_dir, "kernel.json")
    if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
        problem = checks.Problem(
            "not-read",
            f"kernelmagic does not read a kernel.json over {MAX_SPEC_BYTES // 2**20} MiB "
            f"({kernel_json}); Jupyter reads any size, so it may list and start it: check it "
            "there, or make the file smaller",
            kernel_json,
        )
        return SpecInfo(name, resource_dir, {}, [problem], visible=False, read=False)
    reason = exc if isinstance(exc, str) else (exc.strerror or str(exc))
    problem = checks.Problem(
        "unreadable", f"cannot read kernel.json: {reason} (fix or remove {kernel_json})"
    )
    return SpecInfo(name, resource_dir, {}, [problem], visible=False)


def _from_bytes(
    name: str, resource_dir: str, raw: bytes, program_exists: Callable[[str], str] | None = None
) -> SpecInfo:
    return _from_parsed(name, resource_dir, _parsed(raw), program_exists)


def _parsed(raw: bytes) -> Any:
    """The JSON of a kernel.json's bytes, or the ``ValueError`` that says why it is none."""
    try:
        return parse_spec(raw)
    except ValueError as exc:
        return exc


def _from_parsed(
    name: str, resource_dir: str, spec: Any, program_exists: Callable[[str], str] | None = None
) -> SpecInfo:
    if isinstance(spec, ValueError):
        return _unreadable(name, resource_dir, f"malformed JSON: {spec}")
    hiding = checks.structure_problems(spec)
    if hiding:
        return SpecInfo(name, resource_dir, spec if isinstance(spec, dict) else {}, hiding, False)
    hiding = checks.provisioner_problems(spec)
    problems = hiding + checks.launch_problems(spec, program_exists, name, resource_dir)
    return SpecInfo(name, resource_dir, spec, problems, visible=not hiding)


def _load(
    name: str, resource_dir: str, program_exists: Callable[[str], str] | None = None
) -> SpecInfo:
    try:
        raw = _read_kernel_json(os.path.join(resource_dir, "kernel.json"))
    except OSError as exc:
        return _unreadable(name, resource_dir, exc)
    if raw is None:
        if name == NATIVE_KERNEL_NAME:
            return _native_info(resource_dir)
        return _unreadable(name, resource_dir, "the file is gone")
    return _from_bytes(name, resource_dir, raw, program_exists)


def _open_kernel_json(path: str) -> int | OSError | None:
    """``_read``'s path lookup: the open descriptor, or the error, or None (no spec)."""
    try:
        return reading.open_for_reading(path)
    except OSError as exc:
        return exc


def _read(path: str, opened: int | OSError | None) -> bytes | OSError | None:
    """The kernel.json's bytes (a descriptor from ``_open_kernel_json``, closed here); the
    error where the file is a spec that cannot be read; None where it is no spec."""
    if not isinstance(opened, int):
        return opened
    try:
        return reading.read_opened(opened, path, MAX_SPEC_BYTES)
    except OSError as exc:
        return exc


def _program_states(parsed: Iterable[tuple[str, Any]]) -> Callable[[str], str]:
    """``checks.program_state`` of each spec's program, asked once per program (most specs
    share an interpreter) and overlapped where each is a round trip: on a shared filesystem
    the interpreters often live there too, and a stat and an access per program, one after
    another, were most of a listing."""
    programs = set()
    for resource_dir, spec in parsed:
        argv = checks.argv_strings(spec) if isinstance(spec, dict) else None
        if argv:
            programs.add(checks.launch_program(argv[0], resource_dir, spec.get("env")))
    asked = sorted(programs)
    seen = dict(zip(asked, lookups.overlapped(checks.program_state, asked), strict=True))

    def state(program: str) -> str:
        if program not in seen:
            seen[program] = checks.program_state(program)
        return seen[program]

    return state


def list_specs(
    pattern: str | None = None, keep: Callable[[str], bool] | None = None
) -> list[SpecInfo]:
    """Every spec Jupyter finds (hidden ones included), sorted by name.

    ``pattern`` is a case-insensitive glob; a pattern without wildcards matches substrings.
    ``keep`` (a worker's share of the names, see ``bulk``) leaves out the names it refuses.
    Each ``kernel.json`` is read once: opening it is also the test that the directory is a
    spec (what ``find_kernel_specs`` checks with a separate stat), which halves the system
    calls on large kernel directories, and the reads overlap where each is a round trip.
    """
    of_type(pattern, (str, type(None)), "pattern", "glob")
    if keep is not None and not callable(keep):
        raise InvalidInput(f"keep is a function of a name, not {type(keep).__name__}")
    glob = None
    if pattern:
        glob = pattern.lower() if any(c in pattern for c in "*?[") else f"*{pattern.lower()}*"
    checks.installed_provisioners.cache_clear()  # a provisioner may have been installed since

    def wanted(name: str) -> bool:
        return (not glob or fnmatchcase(name, glob)) and (keep is None or keep(name))

    read = spec_files(kernel_dirs(), wanted)
    parsed = {
        name: (path, raw if isinstance(raw, OSError) else _parsed(raw))
        for name, (path, raw) in read.items()
    }
    program_exists = _program_states(parsed.values())
    found: dict[str, SpecInfo] = {}
    for name, (path, spec) in parsed.items():
        if isinstance(spec, OSError):
            found[name] = _unreadable(name, path, spec)
        else:
            found[name] = _from_parsed(name, path, spec, program_exists)
    config = jupyter_rules.discovery_config()
    wants_native = not glob or fnmatchcase(NATIVE_KERNEL_NAME, glob)
    wants_native = wants_native and (keep is None or keep(NATIVE_KERNEL_NAME))
    if NATIVE_KERNEL_NAME not in found and config.ensure_native and wants_native:
        native = _native_dir()
        if native is not None:
            found[NATIVE_KERNEL_NAME] = _native_info(native)
    _mark_not_allowed(found.values(), config)
    return [found[name] for name in sorted(found)]


def _mark_not_allowed(infos: Iterable[SpecInfo], config: jupyter_rules.DiscoveryConfig) -> None:
    """Hide, with the reason, the specs Jupyter config leaves out of Jupyter's listing."""
    if not config.allowed:
        return
    for info in infos:
        if info.name not in config.allowed:
            info.visible = False
            info.problems.append(
                checks.Problem(
                    "not-allowed",
                    f"not allowed by Jupyter config (KernelSpecManager.allowed_kernelspecs "
                    f"in {config.source}); Jupyter does not list it",
                )
            )


def jupyter_listing(specs: Iterable[SpecInfo]) -> dict[str, Any]:
    """``{"kernelspecs": ..., "problems": ...}`` shaped like ``jupyter kernelspec list --json``."""
    of_type(specs, Iterable, "jupyter_listing's specs", "list of SpecInfo")
    specs = list(specs)
    for spec in specs:
        of_type(spec, SpecInfo, "jupyter_listing's specs", "list of SpecInfo")
    return {
        "kernelspecs": {s.name: s.jupyter_view() for s in specs if s.visible},
        "problems": {s.name: [str(p) for p in s.problems] for s in specs if s.problems},
    }


def get_spec(name: str) -> SpecInfo:
    """The spec Jupyter would start for ``name`` (case-insensitive); ``NoSuchKernelSpec``.

    Like ``KernelSpecManager.get_kernel_spec``, this finds a spec that Jupyter config leaves
    out of the listing, so that it can still be shown, fixed or removed.
    """
    of_type(name, str, "name", "spec name")
    return get_specs([name])[0]


def spec_at(name: str, resource_dir: str) -> SpecInfo:
    """The spec named ``name`` in ``resource_dir``, whether or not Jupyter would start it."""
    return _load(name, resource_dir)


def get_specs(names: Iterable[str]) -> list[SpecInfo]:
    """``get_spec`` of each name, from one scan of the kernel dirs (not one per name) that
    looks up those names' entries only (every spec's, to list them, where one is unknown)."""
    names = list(names)
    keys = [name.lower() if isinstance(name, str) else name for name in names]
    found = _all_spec_dirs(wanted=frozenset(keys))
    for name, key in zip(names, keys, strict=True):
        if key not in found:
            raise _unknown(name, _all_spec_dirs())
    infos = lookups.overlapped(lambda key: _load(key, found[key]), keys)
    _mark_not_allowed(infos, jupyter_rules.discovery_config())  # as the listing says
    return infos


def _unknown(name: str, found: Mapping[str, str]) -> Exception:
    """A name no directory holds: ``InvalidInput`` if no spec could ever have it (exit 2),
    else ``NoSuchKernelSpec``. Found specs with odd names (Jupyter lists those) still work."""
    try:
        validate_name(name)
    except InvalidInput as exc:
        return exc
    return NoSuchKernelSpec(name, found)


def locate(name: str) -> tuple[str, str, bool]:
    """(lowercased name, resource dir, is ipykernel's built-in spec) without reading the spec;
    ``NoSuchKernelSpec`` for an unknown name."""
    key = name.lower() if isinstance(name, str) else name
    found = _all_spec_dirs(wanted=frozenset([key]))
    if key not in found:
        raise _unknown(name, _all_spec_dirs())
    return key, found[key], _is_native(key, found[key])


def spec_names() -> list[str]:
    """Sorted names, cheap enough for tab completion."""
    return sorted(find_kernel_specs())
