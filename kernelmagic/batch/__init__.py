"""Kernels that run as batch-scheduler jobs (Slurm; the shape for PBS, LSF, Flux).

``provisioner`` runs inside the Jupyter client (jupyter_client's provisioner entry point
``kernelmagic-slurm-provisioner``); ``launcher`` is the standard-library script it hands to
the job, which runs it with the kernel's own interpreter on the compute node.
"""
