"""imagestudio."""
