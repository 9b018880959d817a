"""The local stack: the real template, state machine and handlers on moto, without AWS or Docker."""
