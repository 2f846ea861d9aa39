"""Analysis workers: one interface, thread and process implementations, chosen in pool.py."""
