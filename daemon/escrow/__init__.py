"""Authorised unmasking: what the masks hide, sealed to a key that never lives on the box."""

# the armour of an escrow private key file (daemon.escrow.keys): refused in any config value and
# looked for in files on the box
PRIVATE_MARKER = "VEILCAM ESCROW PRIVATE KEY"
