"""losses package."""
