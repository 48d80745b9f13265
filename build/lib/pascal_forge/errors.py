"""Exceptions whose messages tell the user what failed and what to do about it."""


class PascalForgeError(Exception):
    """Base class: the CLI prints these as one message, without a traceback."""


class RecipeError(PascalForgeError):
    """A recipe cannot be read, rendered or trusted (YAML, Jinja, patch list)."""


class VariantError(PascalForgeError):
    """The variant configuration asks for something that cannot serve Pascal GPUs."""


class ChannelError(PascalForgeError):
    """The target channel cannot be read, indexed or written."""
