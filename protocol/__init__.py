"""The bus protocol: message registry, codec, framing and bus client.

Workers, tools, benchmarks and the doc generator import this package; it never imports the
supervisor, so any process can speak the protocol without carrying the supervisor's core.
"""
