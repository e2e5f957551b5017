"""A local kernel confining itself before it runs, where the service cannot give it a uid
of its own (an unprivileged service): Landlock (`landlock`) and a seccomp filter
(`seccomp`), applied by `launch`, a script the kernel's command starts with.

`landlock` and `seccomp` use the standard library only: `launch` runs them with Python's
`-I -S` (no site-packages, no environment), before the kernel's own program runs.
"""
