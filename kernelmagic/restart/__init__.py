"""Restarting a running ipykernel in place (%kernel_activate)."""
