"""One module per `harness` subcommand; each exposes add_parser(subparsers) and run(args)."""
