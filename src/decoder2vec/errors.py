"""One error type for everything the user can get wrong, so callers catch one thing."""


class Decoder2VecError(ValueError):
    """Bad input from the user: the message names the offending value and what would be right."""


def choices_error(what: str, value, choices) -> Decoder2VecError:
    return Decoder2VecError(f"unknown {what} {value!r}; choose one of: {', '.join(map(str, choices))}")
