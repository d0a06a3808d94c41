"""The domain: values, ports and use cases. Imports nothing outside the standard library."""
