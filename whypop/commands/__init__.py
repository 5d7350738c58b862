"""Command modules of the ``whypop`` command line: each has ``add_arguments(parser)`` and ``main(args) -> int``."""
