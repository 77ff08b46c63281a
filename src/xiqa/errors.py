"""The one exception type the command line turns into a one-line message."""


class InputError(ValueError):
    """A user's input is wrong: a missing file, a malformed row, an unsupported image.

    The message names the file (and the row or key) and says what is wrong; the command line
    prints it on one line and exits non-zero, without a traceback.
    """
