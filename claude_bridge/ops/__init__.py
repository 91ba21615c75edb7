"""Running the bridge as a service: health report and Prometheus metrics."""
