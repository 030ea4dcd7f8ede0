"""``gateway bridge``: Azure-side MQTT broker → the gateway's pipeline or an AWS-side endpoint.

At-least-once, end to end, journal first: every routed message is written to the local journal
before it goes on — a pipeline route's frame as records, an MQTT route's message in its
destination's series, from which a shipper publishes it by cursor — and the source is
acknowledged (PUBACK) per the route's ACK policy: once journaled (the default), once the
destination confirmed it (``delivered``), or at once (``accepted``). The source session is
persistent, so the broker keeps and redelivers whatever was not acknowledged while the bridge was
away, crashed or reconnecting; the journal keeps what was acknowledged and not yet shipped across
restarts and destination outages. The price is duplicates (a window per lost connection, what was
shipped since the last cursor save per crash); every message carries an id for downstream dedup.

Modules: ``settings`` (the ``[bridge]`` section, validated), ``client`` (aiomqtt + paho manual
acks), ``window`` (in-flight window, acks in order), ``routes`` (mapping and message ids),
``source`` (one source's session loop), ``outbox`` (a destination's journal series, group
committed), ``shipper`` (a destination's cursor over it), ``publisher`` (a destination's
connection pool, paced by token buckets), ``stats``/``metrics``, ``service`` (assembly,
lifecycle). Token buckets and the reconnect backoff are the gateway's shared ones
(``gateway.common``).
"""
