"""The Dramatiq side: middleware, redelivery, ``@on_done`` rules, app loading."""
