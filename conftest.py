"""Root conftest: the infrastructure fixtures (real RabbitMQ, Mosquitto, MariaDB, MongoDB)."""

pytest_plugins = ["pantheon_devtools.pytest_plugin"]
