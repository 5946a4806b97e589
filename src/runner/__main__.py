"""`python -m runner ...`: the CLI, as torchrun and accelerate launch start it (`-m runner apply SPEC`)."""

from runner.cli import main

main()
