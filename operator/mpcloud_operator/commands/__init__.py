"""Subcommands of the `mpcloud` CLI (thin: parse options, call library code, print)."""
