"""MQTT output: broker settings, sending policy, spool, per-stream publishers and the supervisor's subscriber."""
