"""``python -m portbook``: the same as the ``portbook`` command."""

from portbook._cli import main

raise SystemExit(main())
