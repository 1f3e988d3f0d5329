"""`python -m sandboxd ...` is the same as the `sandboxd` command."""

from sandboxd.cli import main

raise SystemExit(main())
