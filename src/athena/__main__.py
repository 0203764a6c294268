"""`python -m athena serve` (same as the `athena` command)."""

from athena.cli import main

raise SystemExit(main())
