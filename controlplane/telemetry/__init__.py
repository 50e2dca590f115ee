"""Call quality: figures in base units, Prometheus metrics, alert rules and engine,
the fallback policy, the quality monitor, alert delivery and readiness."""
