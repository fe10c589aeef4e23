"""Every command, as the type of its request: its name, summary and options, and
``from_args``, which builds it from what those options parsed. Both front ends read this."""

from __future__ import annotations

from kernelmagic.operations.activate import ActivateRequest
from kernelmagic.operations.apply import ApplyRequest
from kernelmagic.operations.doctor import DoctorRequest
from kernelmagic.operations.edit import CloneRequest, EnvRequest, PatchRequest, RemoveRequest
from kernelmagic.operations.install import InstallRequest
from kernelmagic.operations.kernel_sets import ExportRequest
from kernelmagic.operations.kernel_shell import ShellRequest
from kernelmagic.operations.listing import ListRequest, ShowRequest
from kernelmagic.operations.notebooks import NotebookRequest
from kernelmagic.operations.refresh import RefreshRequest
from kernelmagic.operations.remote import ProvisionersRequest, RemoteRequest

REQUESTS = (
    ListRequest,
    ShowRequest,
    InstallRequest,
    CloneRequest,
    PatchRequest,
    EnvRequest,
    ProvisionersRequest,
    RemoteRequest,
    RefreshRequest,
    RemoveRequest,
    ExportRequest,
    ApplyRequest,
    DoctorRequest,
    ShellRequest,
    NotebookRequest,
    ActivateRequest,
)
BY_COMMAND = {request.COMMAND: request for request in REQUESTS}


def on_command_line(request: type) -> bool:
    """Whether the command exists on the command line (activate acts on its own process)."""
    return getattr(request, "CLI", True)
