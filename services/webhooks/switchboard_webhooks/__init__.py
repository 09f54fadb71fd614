"""Switchboard's webhook dispatcher: ``python -m switchboard_webhooks``.

Reads the events stream (docs/protocol.md, "Events stream") through the
consumer group ``webhooks`` and POSTs signed batches to WEBHOOK_URL; see
``dispatcher`` for the delivery rules and docs/deploy.md for running it.
"""
