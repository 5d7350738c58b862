"""The subcommands of ``whypop``: each module has ``add_arguments(parser)`` and ``main(args) -> int``.

A command parses its flags, resolves the configuration (:func:`whypop.cli.load_cli_config`),
calls a stage of ``pipelines/`` with a progress renderer and prints the result. Stages
are imported inside ``main`` so that ``whypop --help`` loads none of them.
"""
