"""Calls from the phone system: the call, the desk, protocol sessions (sans-I/O) and their network adapters."""
