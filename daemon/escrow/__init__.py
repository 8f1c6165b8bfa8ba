"""Authorised unmasking: what the masks hide, sealed to a key that never lives on the box."""
