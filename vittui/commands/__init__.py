"""One module per headless subcommand; each exposes `add_parser(sub)` and imports heavy libraries
only inside the function that runs the command."""
