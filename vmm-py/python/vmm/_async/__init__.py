"""The client's code, written once as coroutines (``_async``) and made blocking (``_sync``)."""
