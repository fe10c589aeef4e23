"""What each command does: a typed request per command, built next to its options."""
