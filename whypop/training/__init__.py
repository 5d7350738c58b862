"""The parts of training the classifier: data (:mod:`.data`), the trainable split
(:mod:`.parts`), the frozen-part cache (:mod:`.frozen_cache`); the trainer with resume
is :mod:`whypop.train`."""
