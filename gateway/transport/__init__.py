"""Device-facing transports: TCP, TLS, MQTT listeners, flow control and reply order."""
