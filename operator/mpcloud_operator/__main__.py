"""`python -m mpcloud_operator` is the `mpcloud` command."""

from mpcloud_operator.cli import main

main()
