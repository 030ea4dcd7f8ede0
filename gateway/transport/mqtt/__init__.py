"""The MQTT device listener: devices connect as MQTT clients and publish frames to the gateway."""
