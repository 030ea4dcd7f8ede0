"""``gateway bridge``: Azure-side MQTT broker → the gateway's pipeline or an AWS-side endpoint.

At-least-once, end to end: a source message is acknowledged (PUBACK) only after its destination
took it — the pipeline's durable write under the ``delivered`` policy, or the AWS endpoint's
PUBACK — and the source session is persistent, so the broker keeps and redelivers whatever was not
acknowledged while the bridge was away, crashed or reconnecting. The price is duplicates, at most
one in-flight window per lost connection; every message carries an id for downstream dedup.

Modules: ``settings`` (the ``[bridge]`` section, validated), ``client`` (aiomqtt + paho manual
acks), ``window`` (in-flight window, acks in order), ``routes`` (mapping and message ids),
``source`` (one source's session loop), ``publisher`` (a destination's connection pool, paced by
token buckets), ``stats``/``metrics``, ``service`` (assembly, lifecycle). Token buckets and the
reconnect backoff are the gateway's shared ones (``gateway.common``).
"""
