"""Fault notifications on the fast path: rules run inline in ``Pipeline.accept``; each frame's
notifications are written to ``notifications/`` on a linger-free stream (the durability point
the frame's ACK waits for) and, at the same moment, queued on every delivery target (SNS, a
webhook, the notifications Kinesis stream), retried and dead-lettered per target.
"""
