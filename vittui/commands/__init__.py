"""One module per subcommand; each exposes `add_parser(sub)` and `run(args)` and imports heavy libraries
only inside `run`. `dashboard` is what runs with no subcommand, so it has only `run`; `vittui.cli` parses
the arguments and dispatches here."""
