"""The one exception type users see: a one-line message naming the problem and the fix."""


class HyperCNNError(Exception):
    """A problem with the user's input or environment, explained in one line.

    The CLI prints it as ``error: <message>`` and exits with status 2, without a traceback.
    """

    def __init__(self, message: str) -> None:
        # One line: anything multi-line belongs in a log, not in the user's face.
        super().__init__(" ".join(str(message).split()))
