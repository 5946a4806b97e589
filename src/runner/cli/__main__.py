"""`python -m runner.cli`: the same as the `runner` command."""

from . import main

main()
