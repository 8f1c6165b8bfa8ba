"""mask stage."""
