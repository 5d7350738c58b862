"""Errors a user can cause, each with a message that names the problem."""


class WhypopError(Exception):
    """Base class: anything the CLI reports as a one-line error and a non-zero exit."""


class ConfigError(WhypopError):
    """A configuration value is unknown, of the wrong type or out of range."""


class InputError(WhypopError):
    """Input data (audio, metadata, layout, checkpoint) cannot be used."""


class StoreError(WhypopError):
    """The run store is missing, from a newer schema, or lacks what a stage needs."""


class NotFound(WhypopError):
    """An id (track, concept, extraction, job) that the store does not hold."""


class Cancelled(WhypopError):
    """A running stage was asked to stop (its partial results were discarded)."""
