"""Calls capability (issue 14): work in progress."""
