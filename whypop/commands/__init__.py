"""Command modules of the ``whypop`` CLI: each has ``add_arguments(parser)`` and ``main(args) -> int``."""
