"""Timers: durable one-shot wake-ups that fire into the events queue (EventBridge Scheduler on
AWS, a SQLite table pumped by a thread in the embedded runtime)."""
