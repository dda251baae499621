"""`python -m spn` = the `spn` command (also what `torchrun -m spn train ...` runs)."""

from .cli import main

raise SystemExit(main())
