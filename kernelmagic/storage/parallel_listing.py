"""Gone: ``list --json`` fanned out over forked processes (see docs/performance.md, "The
mirrors"). Only ``frontends/cli.py`` still calls this, until its ``_list`` stops asking;
then this module goes too. Every listing is made in one process, by the same code as
``%kernel_list`` and the doctor."""

from __future__ import annotations

from kernelmagic.domain.policy import EnvPolicy


def listing_text(pattern: str | None, policy: EnvPolicy) -> str | None:
    """None: the caller lists in this process."""
    return None
