"""`python -m transferlab`: the `tlab` command (for launchers that run a module, e.g. `torchrun -m transferlab`)."""

from .cli import main

main()
