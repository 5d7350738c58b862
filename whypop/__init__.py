"""whypop: explain how a deep network classifies music (spectrograms, ACE concepts, TCAV)."""

__version__ = "0.1.0"
