"""The service's own error types: library errors are mapped to these at the adapter edge."""


class PantheonError(Exception):
    """Base of every error the shared adapters raise."""


class ConfigurationError(PantheonError):
    """Settings are missing, invalid, or hold a placeholder secret."""


class BrokerUnavailable(PantheonError):
    """RabbitMQ or Mosquitto cannot be reached (after the configured retries)."""


class PublishFailed(PantheonError):
    """A message was not confirmed by the broker (nacked, unroutable, or timed out)."""


class StoreUnavailable(PantheonError):
    """MongoDB (or another store) cannot be reached."""
