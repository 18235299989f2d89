"""The API layer: generated protobuf code (``pb``) and helpers over objects.

Nothing here does I/O; every other layer builds on it.
"""
