"""The rules: what goes into a kernel's env, secrets, sources, languages, checks."""
