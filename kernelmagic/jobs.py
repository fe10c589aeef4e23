"""What a batch job sets for its own processes: its id, its devices and threads, values that
name the job. Plain rules with no imports of kernelmagic's, for the capture (``domain``) and
for the Slurm provisioner, which runs inside Jupyter and imports only the base layer."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

# The variable each batch scheduler sets to the job's id inside a job.
JOB_ID_VARIABLES = {
    "SLURM_JOB_ID": "Slurm",
    "PBS_JOBID": "PBS/Torque",
    "LSB_JOBID": "LSF",
    "JOB_ID": "SGE/UGE",
    "FLUX_JOB_ID": "Flux",
    "COBALT_JOBID": "Cobalt",
}
# What a job or its allocation sets for its own resources: the devices it was given, the
# threads its cores allow. Baked into a spec, every later kernel in every later job would use
# them. Names, matched exactly.
JOB_SCOPED_NAMES = frozenset({
    "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES",
    "HIP_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL", "ZE_AFFINITY_MASK", "OMP_NUM_THREADS",
    "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS", "NUMEXPR_MAX_THREADS",
    "VECLIB_MAXIMUM_THREADS", "BLIS_NUM_THREADS", "GOTO_NUM_THREADS", "NUMBA_NUM_THREADS",
    "JULIA_NUM_THREADS", "RAYON_NUM_THREADS", "OMP_PLACES", "OMP_PROC_BIND",
})  # fmt: skip


def batch_job(environ: Mapping[str, str]) -> tuple[str, str] | None:
    """(scheduler, job id) when ``environ`` is a batch job's (inside ``salloc``, ``srun``,
    ``qsub -I``, an Open OnDemand session), else None."""
    for variable, scheduler in JOB_ID_VARIABLES.items():
        job = environ.get(variable, "").strip()
        if job:
            return scheduler, job
    return None


def is_job_scoped(name: str, value: str, job: tuple[str, str] | None) -> bool:
    """Whether, inside ``job``, the variable belongs to the job: its devices and threads, or
    a value that holds the job's id (a ``TMPDIR`` of ``/tmp/slurm-4242``)."""
    if job is None:
        return False
    if name in JOB_SCOPED_NAMES:
        return True
    # The id as a number of its own (/tmp/slurm-4242, /scratch/job4242), not inside another
    # one; too short an id (an SGE job 12) would match version numbers everywhere.
    job_id = job[1]
    if len(job_id) < 3:
        return False
    return re.search(rf"(?<![0-9]){re.escape(job_id)}(?![0-9])", value) is not None


def in_job_temporary(path: str, environ: Mapping[str, str]) -> str | None:
    """Inside a batch job, the job's ``TMPDIR`` when ``path`` lies in it (sites remove it
    when the job ends: a spec's interpreter there goes with the job), else None."""
    temporary = environ.get("TMPDIR", "")
    if batch_job(environ) is None or not os.path.isabs(temporary) or not os.path.isabs(path):
        return None
    root = os.path.normpath(temporary)
    inside = os.path.normpath(path).startswith(root.rstrip(os.sep) + os.sep)
    return root if inside else None
