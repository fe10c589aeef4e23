"""Write spec directories as transactions: lock, stage, swap, recover, back up, undo, remove.

Every change of a spec happens under the spec's lock (``.NAME.lock`` in its kernels dir).
A new or replacing spec is staged in a work directory beside the target and swapped in with
one atomic step; an edit of ``kernel.json`` is an atomic file replace after a backup.

Storage writes what its caller hands it: the spec, its files, whether ``kernel.json`` is
owner-only (the caller knows what is secret). It never decodes the spec's record to find out
what the caller knew. Nothing here prints.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from kernelmagic.domain import checks
from kernelmagic.domain.policy import DEFAULT_POLICY, EnvPolicy
from kernelmagic.errors import (
    InvalidInput,
    KernelmagicError,
    LocationError,
    NoSuchKernelSpec,
    SpecExists,
    path_text,
)
from kernelmagic.reading import (
    MAX_SPEC_BYTES,
    dump_spec,
    open_for_reading,
    parse_spec,
    read_opened,
    read_spec_object,
    spec_bytes,
)
from kernelmagic.storage import atomic
from kernelmagic.storage.discovery import locate, spec_names, specs_in

WORK_PREFIX = ".kernelmagic-"  # staging and trash directories inside a kernels dir
# Ends the name in a work directory's name: '+' is in no spec name, so the work dirs of 'a'
# (".kernelmagic-a+x1y2") never match those of 'a.b' (".kernelmagic-a.b+z3").
WORK_NAME_END = "+"
LOCK_SUFFIX = ".lock"
LOCATION_HINT = "use --user, or --prefix DIR for a directory you can write"
# Never copied from one spec dir into another.
NOT_COPIED = (
    f"*{LOCK_SUFFIX}",
    f"{atomic.TEMP_PREFIX}*",
    f"{atomic.BACKUP_PREFIX}*",
    f"{atomic.UNDONE_PREFIX}*",
    f"{WORK_PREFIX}*",
)


@dataclass
class Change:
    """What an operation did (or, with ``dry_run``, would do) to one spec."""

    action: str  # installed | replaced | cloned | patched | refreshed | restored | removed
    name: str
    resource_dir: str
    before: dict[str, Any] | None = field(repr=False)  # values may be secrets
    after: dict[str, Any] | None = field(repr=False)
    written: bool
    policy: EnvPolicy = field(default=DEFAULT_POLICY, repr=False)  # how to show it

    @property
    def changed(self) -> bool:
        return self.before != self.after

    @property
    def shown_policy(self) -> EnvPolicy:
        """``policy`` with the patterns both versions record: a pattern one version dropped
        still hides the value it named in the other. Worked out only when the change is
        shown, from the records the versions carry."""
        policy = self.policy
        for version in (self.before, self.after):
            if isinstance(version, dict):
                policy = policy.with_recorded(version)
        return policy

    def diff(self) -> str:
        """A unified diff of ``kernel.json``, with secrets masked by the change's policy."""
        import difflib

        path = os.path.join(self.resource_dir, "kernel.json")
        policy = self.shown_policy  # both versions' records decoded once, for both texts
        old = self.masked_text(self.before, policy).splitlines(keepends=True)
        new = self.masked_text(self.after, policy).splitlines(keepends=True)
        return "".join(difflib.unified_diff(old, new, f"{path} (before)", f"{path} (after)"))

    def masked_text(self, spec: dict[str, Any] | None, policy: EnvPolicy | None = None) -> str:
        """``spec`` as ``kernel.json`` text, masked by ``policy`` (default: ``shown_policy``)."""
        shown = self.shown_policy if policy is None else policy
        return "" if spec is None else dump_spec(shown.masked(spec))


def file_mode(owner_only: bool, existing: int | None = None) -> int:
    """Owner-only when the caller says the spec holds a secret; otherwise keep the existing
    file's mode (``existing``), never writable by others (a group member may have made it
    so)."""
    if owner_only:
        return 0o600
    if existing is not None:
        return existing & 0o777 & ~0o002
    return atomic.default_file_mode()


def group_id(group: str) -> int:
    """The id of the Unix group named ``group`` (or given by number), one this user may give
    files to: a group they are a member of (root: any). ``InvalidInput`` otherwise, before
    anything is created."""
    import grp  # POSIX only, as groups are

    try:
        gid = grp.getgrgid(int(group)).gr_gid if group.isdigit() else grp.getgrnam(group).gr_gid
    except (KeyError, ValueError):
        raise InvalidInput(f"no Unix group {group!r} here") from None
    if os.geteuid() != 0 and gid != os.getegid() and gid not in os.getgroups():
        raise InvalidInput(
            f"you are not a member of group {group}, so you cannot give it a spec (only "
            "root can); ask to be added (then log in again), or choose one of your groups "
            "(`id -Gn`)"
        )
    return gid


def share_with_group(path: str, gid: int) -> None:
    """Make a staged spec dir a group's: group-owned, dirs setgid (new files stay the
    group's) and group-readable, files group-readable, nothing writable by others.

    A file that is owner-only stays so: the full text of a snippet that held a secret
    (``kernelmagic-snippet.sh``), the backup of a ``kernel.json`` that held one. A
    ``kernel.json`` holding a secret the user named with ``--include`` is shared on purpose.
    """
    for root, _, names in os.walk(path):
        _give_to_group(root, gid)
        mode = stat.S_IMODE(os.stat(root).st_mode)
        os.chmod(root, (mode | stat.S_ISGID | 0o050) & ~0o002)
        for name in names:
            file = os.path.join(root, name)
            if os.path.islink(file):
                continue
            _give_to_group(file, gid)
            mode = stat.S_IMODE(os.stat(file).st_mode)
            shared = name == "kernel.json" or mode & 0o077
            os.chmod(file, (mode | 0o040 if shared else mode) & ~0o002)


def _make_dirs_for_group(kernels_dir: str, gid: int) -> None:
    """Create a kernels dir and its missing parents (``--prefix DIR`` makes
    ``share/jupyter/kernels``) as a group's: group-owned, setgid and open to the group; the
    group may write them where the umask gives it write (umask 002, as members use a group
    project space), as ``share_with_group`` leaves the spec dir.

    Each is made and changed through descriptors, never by its path again: in a group's
    project dir a member could swap a dir just made for a link to your private one."""
    path = os.path.abspath(kernels_dir)
    missing: list[str] = []
    while not os.path.isdir(path) and path != os.path.dirname(path):
        missing.insert(0, os.path.basename(path))
        path = os.path.dirname(path)
    parent = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in missing:
            with contextlib.suppress(FileExistsError):  # another member made it meanwhile
                os.mkdir(name, dir_fd=parent)
            made = os.open(name, DIR_NOFOLLOW, dir_fd=parent)  # a link now: refused
            os.close(parent)
            parent = made
            info = os.fstat(made)
            if info.st_uid == os.geteuid():
                _give_to_group(os.path.join(path, name), gid, fd=made)
                mode = stat.S_IMODE(info.st_mode)
                os.fchmod(made, (mode | stat.S_ISGID | 0o050) & ~0o002)
            path = os.path.join(path, name)
    finally:
        os.close(parent)


DIR_NOFOLLOW = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def _give_to_group(path: str, gid: int, fd: int | None = None) -> None:
    try:
        os.chown(path if fd is None else fd, -1, gid)
    except OSError as exc:  # e.g. a filesystem that keeps no groups: say that, not "write"
        raise LocationError(
            f"cannot give {path} to group {gid}: {exc.strerror}; nothing was changed"
        ) from None


def lock_path(kernels_dir: str, name: str) -> str:
    return os.path.join(kernels_dir, f".{name.lower()}{LOCK_SUFFIX}")


@contextlib.contextmanager
def writing(path: str, hint: str) -> Iterator[None]:
    """Turn permission and missing-directory errors into advice naming ``path``.

    The failing file is often a lock or temp file inside ``path``; the user needs the
    directory. A failure outside it (an ancestor that cannot be entered) names that instead.
    """

    def where(exc: OSError) -> str:
        failed = os.fspath(exc.filename) if exc.filename else path
        if failed.startswith((path.rstrip(os.sep) + os.sep, _PINNED + os.sep)):
            return path  # inside it, or inside it pinned (``pinned``)
        # One of kernelmagic's own hidden files (a lock beside the spec dir, a temp file or
        # backup in it): the user needs the directory it is made in, not its random name.
        return os.path.dirname(failed) if os.path.basename(failed).startswith(".") else failed

    try:
        yield
    except KernelmagicError:  # said already (a name taken meanwhile is SpecExists, an OSError)
        raise
    except atomic.UnsafeLock as exc:
        raise LocationError(str(exc)) from exc
    except PermissionError as exc:
        raise LocationError(f"cannot write {where(exc)}: permission denied; {hint}") from exc
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise LocationError(f"cannot write {where(exc)}: {exc.strerror}; {hint}") from exc
    except shutil.Error as exc:  # copytree's list of every file that failed
        unreadable = _unreadable_source(exc)
        if unreadable:  # the copy's source, not where it goes (another's owner-only file)
            raise LocationError(
                f"cannot read {unreadable}: permission denied; nothing was changed"
            ) from exc
        reason = _copy_failure(exc)
        raise LocationError(f"cannot write {path}: {reason}; nothing was changed") from exc
    except OSError as exc:  # a full disk, a quota, a file-size limit: nothing was changed
        reason = exc.strerror or str(exc)
        raise LocationError(f"cannot write {where(exc)}: {reason}; nothing was changed") from exc


_PINNED = "/proc/self/fd"  # a descriptor's dir, as a path (``pinned``)
_ERRNO_TEXT = re.compile(r"\[Errno \d+\] ([^:']+)")


def _unreadable_source(exc: shutil.Error) -> str | None:
    """The first file copytree could not read, if that is what failed."""
    failures = exc.args[0] if exc.args and isinstance(exc.args[0], list) else []
    for failure in failures:
        source = failure[0] if isinstance(failure, tuple) and failure else None
        if isinstance(source, str) and os.path.lexists(source) and not os.access(source, os.R_OK):
            # A dir copied as it was opened (``pinned``): named by where it is.
            return os.path.realpath(source) if source.startswith(_PINNED) else source
    return None


def _copy_failure(exc: shutil.Error) -> str:
    """Why ``shutil.copytree`` failed, each reason once (``No space left on device``), not
    its list of (source, destination, error) for every file."""
    failures = exc.args[0] if exc.args and isinstance(exc.args[0], list) else []
    reasons: list[str] = []
    for failure in failures:
        why = str(failure[-1]) if isinstance(failure, tuple) and failure else str(failure)
        found = _ERRNO_TEXT.search(why)
        reason = found.group(1).strip() if found else why
        if reason not in reasons:
            reasons.append(reason)
    return "; ".join(reasons[:3]) or "copying the spec's files failed"


def work_dir(kernels_dir: str, name: str) -> str:
    return tempfile.mkdtemp(prefix=f"{WORK_PREFIX}{name}{WORK_NAME_END}", dir=kernels_dir)


def _is_spec_dir(path: str | None) -> bool:
    return path is not None and os.path.isfile(os.path.join(path, "kernel.json"))


def _recover(kernels_dir: str, name: str, existing: str | None) -> str | None:
    """Finish or undo a replace that crashed between its two renames (call under the lock);
    returns the spec dir that holds ``name`` afterwards."""
    target = os.path.join(kernels_dir, name)
    prefix = f"{WORK_PREFIX}{name}{WORK_NAME_END}"
    for entry in os.scandir(kernels_dir):
        if not entry.name.startswith(prefix):
            continue
        if entry.is_symlink():  # never a work dir of ours: another member's plant
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
            continue
        if not existing:
            with contextlib.suppress(LocationError), pinned(entry.path) as work:
                # Through the pinned dir: one swapped for a link since is not followed.
                old = os.path.join(work, "old")
                if _is_real_dir(old):
                    os.rename(old, target)
                    existing = target
        shutil.rmtree(entry.path, ignore_errors=True)
    return existing


def _is_real_dir(path: str) -> bool:
    """A directory itself, not a link to one (which a group member may have planted)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def refuse_write_protected(kernel_json: str) -> None:
    """A ``kernel.json`` without its owner's write bit was protected on purpose (``chmod
    a-w``): the atomic replace would pass over it, as an editor asks first."""
    with contextlib.suppress(OSError):
        if not os.stat(kernel_json).st_mode & stat.S_IWUSR:
            raise LocationError(
                f"{kernel_json} is write-protected (no write bit for its owner); make it "
                "writable first (chmod u+w) if it is to change; nothing was changed"
            )


def refuse_foreign_link(path: str) -> None:
    """Refuse to change a spec through a symbolic link another user made (as Linux's
    ``protected_symlinks`` refuses to follow one in a shared sticky dir): in a group's
    kernels dir a member can plant a link to another member's private files, to have their
    own write send those files, or changes, where the group reads them."""
    try:
        info = os.lstat(path)
    except OSError:
        return
    if stat.S_ISLNK(info.st_mode) and info.st_uid != os.geteuid():
        raise LocationError(
            f"{path} is a symbolic link that {atomic.owner_name(info.st_uid)} made: kernelmagic "
            "changes no spec through another user's link; nothing was changed (ask them to "
            "replace it)"
        )


def _refuse_taken(kernels_dir: str, name: str) -> SpecExists:
    return SpecExists(
        f"a kernel spec named '{name}' already exists in {kernels_dir}; "
        "pass --replace to overwrite it"
    )


def _read_before(existing: str | None) -> dict[str, Any] | None:
    if existing:
        with contextlib.suppress(OSError, ValueError):
            return read_spec_object(os.path.join(existing, "kernel.json"))
    return None


@dataclass
class Reservation:
    """A name checked free (or replaceable) in a kernels dir, ready to be written."""

    kernels_dir: str
    name: str
    replace: bool
    dry_run: bool
    existing: str | None  # the spec dir holding the name when it was checked

    def write(
        self,
        action: str,
        spec: dict[str, Any],
        populate: Callable[[str], None],
        policy: EnvPolicy = DEFAULT_POLICY,
        group: int | None = None,
        *,
        owner_only: bool,
    ) -> Change:
        """Create the spec dir with ``populate(path)`` (its files) and ``spec`` as kernel.json;
        with ``group`` (a gid), shared with that group (``share_with_group``). kernel.json is
        owner-only when the caller says so (``spec`` or its source held a secret); ``policy``
        is how the returned ``Change`` shows it.

        Under the name's lock: the directory appears under its name only once complete; a
        replaced spec keeps its backups and gains one of the version it replaces.
        """
        target = os.path.join(self.kernels_dir, self.name)
        broken = checks.unstartable(spec)
        if broken:  # a library caller's spec, a copy of a broken one: not written
            raise InvalidInput(f"'{self.name}' would be a spec no kernel starts from: {broken[0]}")
        data = spec_bytes(spec)  # what JSON cannot hold, or too large to read back: fails here
        if self.dry_run:
            before = _read_before(self.existing)
            action = "replaced" if before is not None and action == "installed" else action
            return Change(action, self.name, target, before, spec, False, policy)
        with writing(self.kernels_dir, LOCATION_HINT):
            if group is None:
                os.makedirs(self.kernels_dir, exist_ok=True)
            else:
                _make_dirs_for_group(self.kernels_dir, group)
            with atomic.exclusive_lock(lock_path(self.kernels_dir, self.name)):
                # Another writer may have come and gone since the check; every kernelmagic
                # writer stores the name lowercase, so a stat tells what a scan would.
                existing = self.existing if _is_spec_dir(self.existing) else None
                existing = existing or (target if _is_spec_dir(target) else None)
                existing = _recover(self.kernels_dir, self.name, existing)
                if existing and not self.replace:
                    raise _refuse_taken(self.kernels_dir, self.name)
                if existing:  # its backups are carried over: read through no planted link
                    refuse_foreign_link(existing)
                before = _read_before(existing)
                mode = file_mode(owner_only)
                self._build(data, populate, mode, existing, target, group)
        if before is not None and action == "installed":
            action = "replaced"
        return Change(action, self.name, target, before, spec, True, policy)

    def _build(
        self,
        data: bytes,
        populate: Callable[[str], None],
        mode: int,
        existing: str | None,
        target: str,
        group: int | None,
    ) -> None:
        work = work_dir(self.kernels_dir, self.name)
        try:
            staged = os.path.join(work, "new")
            populate(staged)
            os.makedirs(staged, exist_ok=True)
            # A setgid kernels dir (a group's) passes its setgid on, as mkdir there would.
            inherited = os.stat(self.kernels_dir).st_mode & stat.S_ISGID
            os.chmod(staged, atomic.default_dir_mode() | inherited)
            if existing:
                with pinned(existing) as old_dir:  # read through no link swapped in since
                    _carry_backups(old_dir, staged)
            _without_unsafe_modes(staged)
            kernel_json = os.path.join(staged, "kernel.json")
            atomic.write_bytes_atomic(kernel_json, data, mode=mode)
            if group is not None:
                share_with_group(staged, group)
            if not existing:
                os.rename(staged, target)
            elif atomic.exchange(staged, existing):
                # One atomic step: readers and crashes see the old spec or the new one.
                if existing != target:
                    os.rename(existing, target)  # the name is stored lowercase
            else:
                # No atomic exchange here (not Linux, or the filesystem refuses it): two
                # renames; a crash in between is undone by _recover on the next write.
                old = os.path.join(work, "old")
                os.rename(existing, old)
                try:
                    os.rename(staged, target)
                except BaseException:
                    os.rename(old, existing)  # put the old spec back before the cleanup
                    raise
            atomic.fsync_dir(self.kernels_dir)
        finally:
            shutil.rmtree(work, ignore_errors=True)


def reserve(kernels_dir: str, name: str, *, replace: bool, dry_run: bool) -> Reservation:
    """Check that ``name`` (already validated) is free in ``kernels_dir``, or may be replaced.

    This is the one scan of the kernels dir for a write (case-insensitive, as Jupyter looks
    names up), done before any slow work (a login shell) so that a taken name fails at once
    and a refused or failed install leaves nothing behind, not even a lock file.
    ``SpecExists`` when the name is taken and ``replace`` is false.
    """
    if name.startswith(WORK_PREFIX) or (name.startswith(".") and name.endswith(LOCK_SUFFIX)):
        raise InvalidInput(
            f"'{name}' is a name kernelmagic gives its own files in a kernels dir (a lock, a "
            "work dir); choose another"
        )
    existing = specs_in(kernels_dir).get(name)
    if existing and not replace:
        raise _refuse_taken(kernels_dir, name)
    return Reservation(kernels_dir, name, replace, dry_run, existing)


def _without_unsafe_modes(path: str) -> None:
    """Clear what a copied file must not keep from the spec it came from (which another
    member may have made so): set-id bits, which would make it run as you, and write for
    others. Links are left alone (their mode means nothing)."""
    for root, dirs, names in os.walk(path):
        for name in [*dirs, *names]:
            entry = os.path.join(root, name)
            info = os.lstat(entry)
            if stat.S_ISLNK(info.st_mode):
                continue
            mode = stat.S_IMODE(info.st_mode)
            unsafe = (
                stat.S_ISUID | stat.S_IWOTH | (0 if stat.S_ISDIR(info.st_mode) else stat.S_ISGID)
            )
            if mode & unsafe:
                os.chmod(entry, mode & ~unsafe)


def _carry_backups(old_dir: str, new_dir: str) -> None:
    """Give a replacing spec the history of the one it replaces, so --undo still works."""
    for backup in atomic.backups(old_dir):
        shutil.copy2(backup, new_dir, follow_symlinks=False)  # a link stays one: not a backup
    old_json = os.path.join(old_dir, "kernel.json")
    try:
        raw, mode = read_kernel_json(old_json)
    except FileNotFoundError:
        return
    atomic.keep_backup(old_json, into=new_dir, data=raw, mode=mode)


def copy_files(
    source_dir: str | None, leave_out: tuple[str, ...] = (), files: tuple[str, ...] = ()
) -> Callable[[str], None]:
    """A ``populate`` that copies ``source_dir``'s files (logos, launcher scripts), never
    kernelmagic's own working files (locks, temps, backups) nor names matching ``leave_out``,
    then each of ``files``. With no ``source_dir``, the spec dir holds only ``files``."""
    ignore = shutil.ignore_patterns(*NOT_COPIED, *leave_out)

    def populate(path: str) -> None:
        if source_dir is None:
            os.makedirs(path)
        else:
            # Links are copied as links: never followed out of the spec dir, nor round a loop.
            shutil.copytree(source_dir, path, symlinks=True, ignore=ignore)
        for file in files:
            shutil.copy2(file, path)

    return populate


def spec_dir_given(resource_dir: str) -> str:
    """A library caller's ``resource_dir``, absolute; ``InvalidInput`` unless it holds a
    ``kernel.json`` (a lock for ``/tmp`` would go in ``/``, one for ``geo`` in the caller's
    dir)."""
    if not isinstance(resource_dir, (str, os.PathLike)) or not os.fspath(resource_dir):
        raise InvalidInput(f"resource_dir is the path of a spec dir, not {resource_dir!r}")
    resource_dir = os.path.abspath(path_text(resource_dir, "resource_dir"))
    if not os.path.isfile(os.path.join(resource_dir, "kernel.json")):
        raise InvalidInput(f"{resource_dir} is no kernel spec dir: it holds no kernel.json")
    return resource_dir


def writable(name: str) -> tuple[str, str]:
    key, resource_dir, native = locate(name)
    if native:
        raise KernelmagicError(
            f"'{key}' is ipykernel's built-in spec and has no kernel.json to change; "
            f"clone it first (clone {key} NEW_NAME)"
        )
    return key, resource_dir


def rewrite_spec(
    name: str,
    transform: Callable[[dict[str, Any]], dict[str, Any]],
    *,
    owner_only: Callable[[dict[str, Any], dict[str, Any]], bool],
    dry_run: bool = False,
    action: str = "patched",
    policy: EnvPolicy = DEFAULT_POLICY,
    hint: str | None = None,
    resource_dir: str | None = None,
    key: str | None = None,
) -> Change:
    """Read-modify-write ``kernel.json`` under the spec's lock, keeping a backup for undo.

    ``transform`` gets the current JSON (read once, under the lock, so concurrent writers each
    see the others' changes) and returns the new one; nothing is written when it returns
    the same. ``owner_only(before, after)`` says whether the new one must be owner-only (it
    holds a secret); otherwise it keeps the file's mode. ``resource_dir`` names the spec dir
    to change (default: the one Jupyter starts for ``name``), ``key`` the name Jupyter lists
    it under (default: the dir's); ``hint`` says what to do where it cannot be written.
    """
    if resource_dir is None:
        key, resource_dir = writable(name)
    else:
        resource_dir = spec_dir_given(resource_dir)
        key = key or os.path.basename(resource_dir)
    hint = hint or f"clone it to a location you can write (clone {key} NEW_NAME --user)"
    kernel_json = os.path.join(resource_dir, "kernel.json")
    kernels_dir = os.path.dirname(resource_dir)
    if not dry_run:
        refuse_write_protected(kernel_json)
    # A dry run changes nothing, not even a lock file (it reads one whole file: writes are
    # atomic), so it also previews a spec in a dir the caller cannot write.
    locked = (
        contextlib.nullcontext() if dry_run else atomic.exclusive_lock(lock_path(kernels_dir, key))
    )
    with writing(resource_dir, hint), locked, pinned(resource_dir) as spec_dir:
        pinned_json = os.path.join(spec_dir, "kernel.json")
        try:
            raw, current_mode = read_kernel_json(pinned_json)
            before = parse_spec(raw)
        except OSError as exc:  # said as the reader would: what, and why
            why = exc.strerror or str(exc)
            raise KernelmagicError(
                f"cannot change '{key}': cannot read {kernel_json}: {why}"
            ) from exc
        except ValueError as exc:
            raise KernelmagicError(f"cannot change '{key}': {exc}") from exc
        problems = checks.structure_problems(before)
        if problems:
            raise KernelmagicError(f"cannot change '{key}': {problems[0]}")
        after = transform(copy.deepcopy(before))
        problems = checks.structure_problems(after)
        if problems:  # Jupyter would hide the spec written (library callers' transforms)
            raise InvalidInput(f"the change would make '{key}' a spec Jupyter hides: {problems[0]}")
        broken = [p for p in checks.unstartable(after) if p not in checks.unstartable(before)]
        if broken:  # listed, but no kernel of it could start
            raise InvalidInput(
                f"the change would make '{key}' a spec no kernel starts from: {broken[0]}"
            )
        data = spec_bytes(after) if after != before else b""  # a dry run's too
        written = not dry_run and after != before
        if written:
            atomic.remove_stale_temps(spec_dir)
            mode = file_mode(owner_only(before, after), current_mode)
            # The version replaced is owner-only too where it holds a secret: one written by
            # a kernelmagic older than the rule that calls that value secret was not.
            kept_hidden = owner_only(before, before)
            # The backup is the bytes read (never the file read again: a member may have
            # swapped it since). The oldest backup goes only once the new file is there: a
            # failed write (a full disk) leaves the history as it was.
            backup = atomic.keep_backup(
                pinned_json, prune=False, data=raw, mode=file_mode(kept_hidden, current_mode)
            )
            try:
                atomic.write_bytes_atomic(pinned_json, data, mode=mode)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(backup)
                raise
            atomic.prune_backups(spec_dir)
            if kept_hidden or mode == 0o600:
                _hide_secret_history(spec_dir, owner_only)
    return Change(action, key, resource_dir, before, after, written, policy)


def _hide_secret_history(
    spec_dir: str, owner_only: Callable[[dict[str, Any], dict[str, Any]], bool]
) -> None:
    """Make owner-only each earlier version (backups, versions undone) of a spec holding a
    secret that holds one itself and others can read: an older kernelmagic wrote it so."""
    for kept in (*atomic.backups(spec_dir), *atomic.backups(spec_dir, atomic.UNDONE_PREFIX)):
        try:
            if not kept.lstat().st_mode & 0o077:
                continue
            raw, kept_mode = read_kernel_json(str(kept), own_links=False)
            old = parse_spec(raw)
        except (OSError, ValueError):
            continue  # not ours to read, or not a spec: the doctor names it
        if isinstance(old, dict) and owner_only(old, old):
            with contextlib.suppress(OSError):  # another member's file: the doctor names it
                os.chmod(kept, kept_mode & 0o700)


@contextlib.contextmanager
def pinned(resource_dir: str) -> Iterator[str]:
    """The spec dir as a path that stays this directory while it is changed: Linux's
    ``/proc/self/fd/N`` of a descriptor opened without following another user's link. A
    group member who swaps the dir for a link meanwhile sends none of the change, nor any of
    what it reads, elsewhere. Where there is no /proc, the path itself."""
    refuse_foreign_link(resource_dir)
    if not os.path.isdir(_PINNED):
        yield resource_dir
        return
    own_link = os.path.islink(resource_dir)  # yours: followed, as Jupyter follows it
    try:
        fd = os.open(resource_dir, DIR_NOFOLLOW & ~(os.O_NOFOLLOW if own_link else 0))
    except FileNotFoundError:  # removed since it was looked up
        raise NoSuchKernelSpec(os.path.basename(resource_dir), spec_names()) from None
    except OSError as exc:
        raise LocationError(
            f"cannot change {resource_dir}: {exc.strerror} (a link in its place since it was "
            "looked up?); nothing was changed"
        ) from None
    try:
        yield f"{_PINNED}/{fd}"
    finally:
        os.close(fd)


def read_kernel_json(path: str, *, own_links: bool = True) -> tuple[bytes, int]:
    """The bytes and mode of a ``kernel.json`` (or of a backup of one), read without
    following a link another user made (one swapped in since it was looked up is refused,
    not read); a link of yours is followed unless ``own_links`` is false (a backup: no link
    is one of kernelmagic's). ``FileNotFoundError`` where there is no regular file."""
    refuse_foreign_link(path)
    fd = open_for_reading(path, follow=own_links and os.path.islink(path))
    if fd is None:
        raise FileNotFoundError(errno.ENOENT, "not a regular file", path)
    mode = stat.S_IMODE(os.fstat(fd).st_mode)
    raw = read_opened(fd, path, MAX_SPEC_BYTES)
    if raw is None:
        raise FileNotFoundError(errno.ENOENT, "not a regular file", path)
    return raw, mode
