"""The `jaxpose` subcommands: one module each, with `define_flags(flag_values)` and `main(flag_values)`.

`jaxpose.cli` parses each command's own absl flags (a `flags.FlagValues` per
command, so a command accepts only its flags) and calls its `main`, which
turns them into typed arguments of the library.
"""
