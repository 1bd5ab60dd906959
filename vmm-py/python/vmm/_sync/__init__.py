# Made by vmm-py/make_sync.py from vmm/_async/__init__.py: edit that file, not this one.
"""The client's code, written once as coroutines (``_async``) and made blocking (``_sync``)."""
