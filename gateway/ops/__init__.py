"""Running the gateway: lifecycle, workers, systemd, health, logs and metrics."""
