"""Views that combine the questions: compare, sweep, check, and their report."""
