"""What a spec was: the backups that undo and redo restore, and the removed specs kept to be
brought back. Every change happens under the spec's lock, as in ``transactions``."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import stat
from collections.abc import Iterable

from kernelmagic.domain.policy import DEFAULT_POLICY, EnvPolicy
from kernelmagic.errors import (
    InvalidInput,
    KernelmagicError,
    LocationError,
    string_list,
    true_or_false,
)
from kernelmagic.reading import parse_spec
from kernelmagic.storage import atomic
from kernelmagic.storage.discovery import NATIVE_KERNEL_NAME, locate
from kernelmagic.storage.transactions import (
    DIR_NOFOLLOW,
    WORK_PREFIX,
    Change,
    lock_path,
    pinned,
    read_kernel_json,
    refuse_write_protected,
    work_dir,
    writable,
    writing,
)


def undo_last_write(name: str, policy: EnvPolicy = DEFAULT_POLICY) -> Change:
    """Restore ``kernel.json`` byte for byte from its newest backup (and drop that backup),
    keeping the version it replaces for ``redo_last_undo``.

    Repeating it walks further back, as far as the kept backups go.
    """
    return _restore(name, atomic.BACKUP_PREFIX, atomic.UNDONE_PREFIX, policy, "earlier")


def redo_last_undo(name: str, policy: EnvPolicy = DEFAULT_POLICY) -> Change:
    """Bring back the version the last undo replaced (keeping the current one as a backup,
    so it can be undone again). Repeating it walks forward, as far as undo went back."""
    return _restore(name, atomic.UNDONE_PREFIX, atomic.BACKUP_PREFIX, policy, "undone")


def _restore(name: str, take: str, keep: str, policy: EnvPolicy, what: str) -> Change:
    """Replace ``kernel.json`` by the newest version of the series ``take`` (which drops
    it), saving the replaced one as the newest of the series ``keep``."""
    key, resource_dir = writable(name)
    kernel_json = os.path.join(resource_dir, "kernel.json")
    kernels_dir = os.path.dirname(resource_dir)
    hint = "ask the owner of that directory"
    refuse_write_protected(kernel_json)
    with (
        writing(resource_dir, hint),
        atomic.exclusive_lock(lock_path(kernels_dir, key)),
        pinned(resource_dir) as spec_dir,  # a dir swapped for a link meanwhile: not followed
    ):
        atomic.remove_stale_temps(spec_dir)
        saved = atomic.backups(spec_dir, take)
        if not saved:
            raise KernelmagicError(f"no {what} version of '{key}' to restore")
        newest = saved[-1]
        try:  # a regular file, never through a link; its mode is that of what is read
            data, mode = read_kernel_json(str(newest), own_links=False)
        except FileNotFoundError:
            raise KernelmagicError(
                f"{resource_dir}/{newest.name} is not a regular file; remove it"
            ) from None
        group_shared = os.stat(spec_dir).st_mode & stat.S_ISGID
        mode = _mode_for(data, mode & 0o775, group_shared, policy)
        pinned_json = os.path.join(spec_dir, "kernel.json")
        before = None
        try:
            raw, current_mode = read_kernel_json(pinned_json)
        except FileNotFoundError:
            raw = None
        except OSError as exc:
            if exc.errno != errno.EFBIG:
                raise
            raise KernelmagicError(  # one written by hand: not read, so not kept for redo
                f"the kernel.json of '{key}' is {exc.strerror}, more than kernelmagic reads, "
                f"so it cannot be kept to go back to; nothing was changed (the version to "
                f"restore is {resource_dir}/{newest.name})"
            ) from None
        if raw is not None:
            with contextlib.suppress(ValueError):
                before = parse_spec(raw)
            # Nothing is lost: undo is undoable. The bytes read, not the file read again.
            kept_mode = _mode_for(raw, current_mode, group_shared, policy)
            atomic.keep_backup(pinned_json, prefix=keep, data=raw, mode=kept_mode)
        atomic.write_bytes_atomic(pinned_json, data, mode=mode)
        newest.unlink()
    try:
        after = json.loads(data)
    except ValueError:
        after = None
    return Change("restored", key, resource_dir, before, after, True, policy)


def _mode_for(data: bytes, mode: int, group_shared: int, policy: EnvPolicy) -> int:
    """The mode a version of a spec is written with: owner-only where it holds a secret (an
    older kernelmagic, whose rules did not call that value secret, left it readable), but
    a group's spec (setgid dir) shares its secrets with the group on purpose."""
    if group_shared:
        return mode
    try:
        spec = parse_spec(data)
    except ValueError:
        return mode
    return 0o600 if policy.with_recorded(spec).holds_secrets(spec) else mode


# Removed specs are kept here, one per name (the newest removal), until removed again: out of
# Jupyter's sight (no kernel.json directly inside), and brought back by moving it back.
REMOVED_DIR = f"{WORK_PREFIX}removed"


def removed_copy(path: str) -> str:
    """Where ``remove_specs`` keeps the spec it removed from ``path``."""
    kernels_dir, dirname = os.path.split(path)
    return os.path.join(kernels_dir, REMOVED_DIR, dirname)


def remove_specs(names: Iterable[str], *, dry_run: bool = False) -> list[str]:
    """Remove the named specs (all are checked before any is removed); returns their paths.

    Each is moved, in one step, to ``removed_copy(path)`` beside it (replacing an older copy of
    that name), so a removal can be undone by moving it back. ``dry_run`` removes nothing.
    """
    if isinstance(names, str):  # not each of its letters
        raise InvalidInput(f"names is a list of spec names, not the text {names!r}")
    true_or_false(dry_run, "dry_run")
    named: dict[str, str] = {}  # path: the name it was asked by
    for name in string_list(names, "names"):
        _, path, native = locate(name)
        if native:
            raise KernelmagicError(
                f"'{NATIVE_KERNEL_NAME}' is ipykernel's built-in spec; it cannot be removed "
                "(uninstall ipykernel to drop it)"
            )
        named.setdefault(path, name)
    targets = list(named)
    hint = "ask the owner of that directory to remove it"
    for path in targets:  # all are checked before any is removed: none, or every one
        # A move into the removed-specs dir writes the kernels dir and the spec dir's ".."
        # (a link's move, only the kernels dir).
        for needed in (os.path.dirname(path), *(() if os.path.islink(path) else (path,))):
            if not os.access(needed, os.W_OK | os.X_OK):
                _refuse_gone(path, named[path])  # another remover was first (walk X2)
                raise LocationError(f"cannot write {needed}: permission denied; {hint}")
    if dry_run:
        return targets
    olders: list[str] = []
    try:
        with contextlib.ExitStack() as held:
            for path in sorted(targets):  # one order for every remover: none waits in a circle
                with writing(path, hint):
                    held.enter_context(atomic.exclusive_lock(lock_path(*os.path.split(path))))
            # Another remover may have been first (walk X: this one removed the others, then
            # failed on that one with a false "permission" error): none, or every one.
            for path in targets:
                _refuse_gone(path, named[path])
            for path in targets:
                kernels_dir, dirname = os.path.split(path)
                kept = removed_copy(path)
                with writing(path, hint):
                    _make_removed_dir(os.path.dirname(kept), kernels_dir)
                    olders.append(work_dir(kernels_dir, dirname.lower()))
                    _move_out_of_sight(path, kept, os.path.join(olders[-1], "older-removed"))
    finally:
        for older in olders:  # the older copies go once the locks are let go
            shutil.rmtree(older, ignore_errors=True)
    return targets


def _refuse_gone(path: str, name: str) -> None:
    """Refuse to go on where the spec at ``path`` is gone (another process removed it):
    ``NoSuchKernelSpec``, naming the specs there are, where no spec of ``name`` is left."""
    if os.path.lexists(path):
        return
    locate(name)  # raises it where Jupyter finds no spec of that name now
    raise KernelmagicError(
        f"the spec '{name}' in {os.path.dirname(path)} was removed meanwhile by another "
        "process; nothing was removed: run it again for the one Jupyter finds now"
    )


def _move_out_of_sight(path: str, kept: str, older: str) -> None:
    """Move the spec at ``path`` to ``kept`` in one step, the copy kept there before aside
    to ``older``; a failed move puts that copy back."""
    try:
        os.rename(kept, older)
    except FileNotFoundError:
        older = ""
    try:
        os.rename(path, kept)
    except BaseException:
        if older:
            os.rename(older, kept)
        raise


def _make_removed_dir(path: str, kernels_dir: str) -> None:
    """The dir of removed specs, usable by whoever may change the kernels dir it is in (a
    team's group dir: every member removes into it), by nobody else."""
    group_bits = stat.S_IMODE(os.stat(kernels_dir).st_mode) & 0o070
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    wanted = 0o700 | group_bits | (stat.S_ISGID if group_bits else 0)
    try:  # changed through a descriptor: a member cannot swap in a link meanwhile
        fd = os.open(path, DIR_NOFOLLOW)
    except PermissionError:
        raise atomic.kept_from_others(path, "dir of removed specs", wanted) from None
    except OSError:
        raise KernelmagicError(f"{path} is not a directory; remove it") from None
    try:
        info = os.fstat(fd)
        mode = stat.S_IMODE(info.st_mode)
        if info.st_uid == os.geteuid():
            if mode != wanted:
                os.fchmod(fd, wanted)
        elif not os.access(path, os.W_OK | os.X_OK):
            raise atomic.kept_from_others(path, "dir of removed specs", wanted)
    finally:
        os.close(fd)
