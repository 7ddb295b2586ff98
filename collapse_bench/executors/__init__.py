"""Executors: serial, process (pebble's pool) and Ray, one contract (`executors.base`)."""
