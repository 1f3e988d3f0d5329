"""`python -m sandboxd ...` is the same as the `sandboxd` command."""

from sandboxd.cli.main import main

raise SystemExit(main())
