"""Errors shared across the project, and the exit status of each kind."""


class UserFacingError(Exception):
    """An error whose message is the whole story for the user: printed without a traceback.

    The `vaani` command exits with ``exit_status``: 2 for a bad input or a refusal.
    """

    exit_status = 2


class ServerUnreachable(UserFacingError):
    """No server answers at the address: exit status 3, so scripts can tell it from a bad file."""

    exit_status = 3
