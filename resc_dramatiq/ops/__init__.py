"""Operations: status, notifications, metrics, log formats, the demo and its embedded server."""
