"""Running the bridge as a service: the health report, and the routes and tasks the composition
root attaches for operators (``/health``, ``/metrics``, the threads API, retention)."""
