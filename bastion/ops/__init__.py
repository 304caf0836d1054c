"""Running the bastion in production: check-config, sd_notify, health/metrics, limits."""
