"""The error tree of metrology (drawn in the package docstring); every error names its field."""


class MetrologyError(ValueError):
    """Base of every metrology error."""


class TableError(MetrologyError):
    """An MPE table file is malformed (the message names the file and the key)."""


class InstrumentError(MetrologyError):
    """An instrument does not fit its table (the message names the field)."""


class InputError(MetrologyError):
    """Readings or parameters rejected by a public wrapper (names the column/parameter)."""
