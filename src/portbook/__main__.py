"""``python -m portbook``: the same as the ``portbook`` command."""

from portbook._cli import console

console()
