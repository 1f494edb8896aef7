"""The one error every contract parser raises, with a reason fit for a dead-letter header."""


class ContractError(ValueError):
    """A payload does not satisfy its contract; ``reason`` says why in one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
