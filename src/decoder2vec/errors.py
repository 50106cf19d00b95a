"""One error type for everything the user can get wrong, so callers catch one thing."""

import numbers


class Decoder2VecError(ValueError):
    """Bad input from the user: the message names the offending value and what would be right."""


def choices_error(what: str, value, choices) -> Decoder2VecError:
    return Decoder2VecError(f"unknown {what} {value!r}; choose one of: {', '.join(map(str, choices))}")


def check_int(name: str, value, *, minimum: int = 1, optional: bool = False) -> None:
    """An integer >= minimum (numpy's too; a bool is not one), or None where optional."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise Decoder2VecError(f"{name} must be an integer >= {minimum}{' or None' if optional else ''}, "
                               f"got {value!r}")
    if value < minimum:
        raise Decoder2VecError(f"{name} must be >= {minimum}, got {value}")
