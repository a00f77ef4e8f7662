"""``python -m flowstate.cli``: the same as the ``flowstate`` console script."""

from flowstate.cli import app

app()
