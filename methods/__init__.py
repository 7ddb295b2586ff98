"""Built-in methods: every module here is imported by the registry and registers itself."""
